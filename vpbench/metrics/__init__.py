"""Built-in metric plugins (conventions follow OpenSTL; see each class)."""
