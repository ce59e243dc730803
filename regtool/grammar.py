"""The distribution spec's grammar for repository names, tags and references (spec.md, "Pulling manifests"), and
the decimal numbers a peer sends in headers and query parameters."""

from __future__ import annotations

import re

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_COMPONENT_RE",
    "NAME_RE",
    "TAG_RE",
    "is_valid_name",
    "is_valid_tag",
    "parse_decimal",
]

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_COMPONENT_RE = re.compile(rf"^{NAME_COMPONENT}\Z")
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*\Z")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
# host + "/" + name must stay within 255 characters; the name alone gets the same cap on the server.
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.match(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def parse_decimal(text: str | None, *, max_digits: int = 19) -> int | None:
    """A non-negative decimal number as a peer sends it: ASCII digits only, at most ``max_digits``; None for
    anything else. (``str.isdigit`` takes "²", which ``int`` refuses, and ``int`` refuses more than 4300 digits:
    either would fail a request with a ValueError.)"""
    if text is None or not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)
