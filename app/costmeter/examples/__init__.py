"""Example training scripts shipped with Costmeter (offline, small, reporting progress)."""
