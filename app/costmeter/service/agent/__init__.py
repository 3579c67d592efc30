"""The headless agent: samples this machine, buffers, and serves /metrics and /v1/* over HTTP(S)."""
