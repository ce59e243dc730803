"""The registry client: probe, pull, push and copy over registry v1 and v2."""
