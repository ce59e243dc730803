"""How the port runs the suite's specs: in order, each named, sharing state as the Ginkgo suite does."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from tests.conformance.data import ERROR_CODES

__all__ = ["CROSSMOUNT_NAMESPACE", "NAMESPACE", "error_code", "is_success", "relative_location", "step", "with_query"]

NAMESPACE = "conformance/repo1"
CROSSMOUNT_NAMESPACE = "conformance-2f0e4f0a-5b6c-4d1e-9a3b-7c8d9e0f1a2b"


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the suite's spec in any failure raised inside."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"spec {name!r}: {exc}") from exc


def is_success(status: int) -> bool:
    return 200 <= status < 300


def relative_location(response: httpx.Response) -> str:
    """The Location as the suite's reggie client follows it: a path (with its query) on the same registry."""
    location = response.headers.get("location", "")
    assert location, f"no Location in the {response.status_code} answer"
    url = httpx.URL(location)
    return url.raw_path.decode("ascii") if url.is_absolute_url else location


def with_query(location: str, **params: str) -> str:
    """``location`` with ``params`` added to its query, as the suite's client does: an upload's Location may carry
    state in its query (distribution's ``_state``), which httpx's ``params=`` would replace."""
    url = httpx.URL(location).copy_merge_params(params)
    return str(url) if url.is_absolute_url else url.raw_path.decode("ascii")


def error_code(response: httpx.Response) -> str:
    """The first error code of an error envelope, checked to be one the spec defines."""
    errors = response.json()["errors"]
    assert errors, "an empty errors list"
    code = errors[0]["code"]
    assert code in ERROR_CODES, f"{code!r} is not an OCI error code"
    return str(code)
