"""wattsight: where the watts go."""

__version__ = "0.1.0"
