"""The Connect front end: ``POST /api.EntroQ/<Method>`` (unary JSON and StreamTasks' envelopes)."""
