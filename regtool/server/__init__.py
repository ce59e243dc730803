"""``regtool serve``: a registry server speaking v2 / OCI distribution and v1."""
