"""Data files shipped with Costmeter (installed as the package ``costmeter.resources``)."""
