"""SQLite history: schema and migrations, a batched writer, rollups, retention and queries."""
