"""Reusable blocks with their own tests: vector quantisers, 3-D causal masked convolutions,
causal spatiotemporal attention."""
