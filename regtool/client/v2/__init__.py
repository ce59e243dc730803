"""The registry v2 / OCI distribution API and the jobs built on it: pull, push, copy, inspect, catalog."""
