"""cnnrun: declarative CNN training on a hand-written NumPy/CuPy engine."""

__version__ = "0.1.0"
