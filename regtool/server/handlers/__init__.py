"""Request handlers, one resource per module; each is an ``async def (request) -> Response``."""
