"""The version of vpbench (its own module, so the core reads it without importing the package face)."""

__version__ = "0.1.0"
