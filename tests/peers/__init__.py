"""Real protocol peers started by the tests (and the benches) on 127.0.0.1: one module per peer."""
