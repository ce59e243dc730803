"""The wire as data: grammar, routes, headers, media types and error codes of registry v1 and v2.

Both the client and the server import this package, so the two halves cannot drift apart.
"""
