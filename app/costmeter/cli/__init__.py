"""The ``costmeter`` command."""
