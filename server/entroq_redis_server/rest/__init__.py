"""The REST front end: EntroQ's ``/api/v0/...`` routes (google.api.http transcoding)."""
