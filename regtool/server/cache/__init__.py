"""The blob-descriptor cache: what the store would otherwise stat again and again, kept where every instance
behind one balancer shares it (``descriptors.py``: the interface; ``rediscache.py``: the Redis implementation,
which imports ``redis`` only when a cache is configured)."""

from __future__ import annotations

from regtool.server.cache.descriptors import BlobDescriptor, CacheStats, DescriptorCache
from regtool.server.config import ServerConfig

__all__ = ["BlobDescriptor", "CacheStats", "DescriptorCache", "open_cache"]


def open_cache(config: ServerConfig) -> DescriptorCache | None:
    """The cache ``config`` asks for (``redis_addr``), or None. Nothing is sent to Redis until the first lookup,
    so a Redis that is down at start delays nothing: the server starts and serves uncached."""
    if config.redis_addr is None:
        return None
    from regtool.server.cache.rediscache import RedisDescriptorCache

    return RedisDescriptorCache(config.redis_addr, password=config.redis_password, db=config.redis_db)
