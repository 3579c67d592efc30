"""The main window's pages; each takes the shared ``AppContext``."""
