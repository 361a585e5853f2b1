"""cavkit-example: a smooth-max retrieval strategy, and a template for writing cavkit plugins."""

__version__ = "0.1.0"
