"""``n``/``last`` paging shared by tags/list and _catalog (distribution's ``Link: <...>; rel="next"``)."""

from __future__ import annotations

from starlette.requests import Request

from regtool.grammar import parse_decimal
from regtool.protocol.errcodes import ErrorCode
from regtool.server.errors import ApiError

__all__ = ["MAX_PAGE", "paginate"]

MAX_PAGE = 10_000


def paginate(request: Request, entries: list[str]) -> tuple[list[str], int | None, str | None]:
    """Apply ``?n=`` and ``?last=`` to the sorted ``entries``.

    Returns the page, the ``n`` asked for (None when absent), and the ``last`` value of the next page (None when
    nothing follows). A bad ``n`` is PAGINATION_NUMBER_INVALID.
    """
    n_text = request.query_params.get("n")
    last = request.query_params.get("last")
    n: int | None = None
    if n_text is not None:
        n = parse_decimal(n_text, max_digits=9)
        if n is None or n > MAX_PAGE:
            raise ApiError(
                ErrorCode.PAGINATION_NUMBER_INVALID,
                f"invalid page size n={n_text[:20]!r}: expected 0..{MAX_PAGE}",
                detail=n_text[:20],
            )
    if last:
        entries = [e for e in entries if e > last]
    if n is None:
        return entries, None, None
    page = entries[:n]
    following = page[-1] if n > 0 and len(entries) > n else None
    return page, n, following
