"""Every view of results (rich table, Markdown, plots, GIFs) is derived from the tidy table."""
