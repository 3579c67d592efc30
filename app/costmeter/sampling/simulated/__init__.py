"""A fake of the pynvml API with real device specs and workload profiles, for tests and demos."""
