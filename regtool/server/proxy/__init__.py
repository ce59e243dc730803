"""The pull-through cache (``regtool serve --proxy-remote URL``): the server's one client of other registries.

``store.ProxyStore`` is what the handlers call in cache mode; ``upstream`` reaches the mirrored registries through
the client library; ``fill`` and ``response`` move a missed blob from upstream into the cache and to the clients
at once; ``limits`` keeps the cache within its TTL and size (``limits.enforce_cache_limits``, which the garbage
collector calls too); ``remotes`` reads the ``--proxy-remote`` values. Nothing is imported here, so the light
modules (``remotes``, ``limits``) load without the client library.
"""
