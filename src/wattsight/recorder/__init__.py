"""The energy recorder's Python SDK (in progress)."""
