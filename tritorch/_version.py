"""The package version, in a module of its own so that modules below tritorch/__init__.py can read it."""
__version__ = "0.1.0"
