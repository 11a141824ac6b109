"""The reliability battery's shared parts (docs/reference/reliability-battery.md 3): the history log,
the C1-C9 checker, the worker programs the tests run as separate processes, and the
helpers that start, pause, crash and inspect them."""
