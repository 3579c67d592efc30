"""An example Costmeter run backend (see backend.py)."""

__version__ = "0.1.0"
