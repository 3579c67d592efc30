"""Costmeter's fixtures for plugin authors: run_dir, backend_config, make_spec."""

pytest_plugins = ["costmeter.plugin_testing"]
