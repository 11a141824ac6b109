"""The reliability battery's shared parts (reliability-battery.md section 3): the history log,
the C1-C9 checker, the worker programs the tests run as separate processes, and the
helpers that start, pause, crash and inspect them."""
