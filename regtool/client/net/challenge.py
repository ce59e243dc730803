"""A pure parser for ``WWW-Authenticate`` header values (RFC 9110 §11.6.1).

A header value holds one or more challenges, separated by commas; each is a scheme followed either by a
token68 or by comma-separated ``name=value`` parameters, where a value is a token or a quoted string (with
``\\`` escapes, and commas allowed inside the quotes). Parameter names are case-insensitive and stored lowercased;
scheme names are stored lowercased too.

>>> [c.scheme for c in parse_challenges('Bearer realm="https://auth/token",service="reg", Basic realm="x"')]
['bearer', 'basic']
>>> parse_challenges('Bearer realm="https://auth/token",scope="repository:a/b:pull,push"')[0].params["scope"]
'repository:a/b:pull,push'

Registries in the wild send unquoted values that are not RFC tokens (``scope=repository:a:pull``), so an
unquoted value runs to the next comma or whitespace. Anything else malformed raises ChallengeError, and only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regtool.errors import ProtocolError

__all__ = ["Challenge", "ChallengeError", "parse_challenges"]

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


class ChallengeError(ProtocolError):
    """A WWW-Authenticate value that does not parse."""


@dataclass(frozen=True)
class Challenge:
    """One challenge: ``scheme`` (lowercase), ``params`` (lowercase names), or a ``token68``."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        # The caller saw the opening quote.
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif ch == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(ch)
                self.pos += 1
        raise ChallengeError(f"unterminated quoted string in WWW-Authenticate at offset {self.pos}")

    def bare_value(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ',"' + _WS:
            self.pos += 1
        return self.text[start : self.pos]


def _looks_like_param(scanner: _Scanner) -> bool:
    """At ``name BWS "=" BWS value`` (and not a token68 ending in ``=``)?"""
    save = scanner.pos
    try:
        if not scanner.token():
            return False
        scanner.skip_ws()
        if scanner.peek() != "=":
            return False
        scanner.pos += 1
        scanner.skip_ws()
        nxt = scanner.peek()
        # "abc==" or "abc=" at the end is a token68, not a parameter.
        return nxt != "" and nxt not in ",=" and nxt not in _WS
    finally:
        scanner.pos = save


def _token68(scanner: _Scanner) -> str | None:
    save = scanner.pos
    while scanner.peek() and scanner.peek() in _TOKEN68_CHARS:
        scanner.pos += 1
    if scanner.pos == save:
        return None
    while scanner.peek() == "=":
        scanner.pos += 1
    end = scanner.pos
    scanner.skip_ws()
    if scanner.at_end() or scanner.peek() == ",":
        return scanner.text[save:end]
    scanner.pos = save
    return None


def _skip_separators(scanner: _Scanner) -> None:
    while scanner.peek() and scanner.peek() in "," + _WS:
        scanner.pos += 1


def parse_challenges(value: str) -> list[Challenge]:
    """All challenges of one header value, in order. Raises ChallengeError (only) on malformed input."""
    scanner = _Scanner(value)
    challenges: list[Challenge] = []
    _skip_separators(scanner)
    while not scanner.at_end():
        scheme = scanner.token()
        if not scheme:
            raise ChallengeError(f"expected an auth scheme in WWW-Authenticate at offset {scanner.pos}")
        params: dict[str, str] = {}
        token68: str | None = None
        if scanner.peek() and scanner.peek() not in "," + _WS:
            raise ChallengeError(f"unexpected {scanner.peek()!r} after scheme {scheme!r} in WWW-Authenticate")
        scanner.skip_ws()
        if not scanner.at_end() and scanner.peek() != ",":
            if _looks_like_param(scanner):
                _parse_params(scanner, params)
            else:
                token68 = _token68(scanner)
                if token68 is None:
                    raise ChallengeError(f"malformed parameters of {scheme!r} challenge at offset {scanner.pos}")
        challenges.append(Challenge(scheme.lower(), params, token68))
        _skip_separators(scanner)
    return challenges


def _parse_params(scanner: _Scanner, params: dict[str, str]) -> None:
    while True:
        name = scanner.token().lower()
        scanner.skip_ws()
        scanner.pos += 1  # "=" (checked by _looks_like_param)
        scanner.skip_ws()
        value = scanner.quoted() if scanner.peek() == '"' else scanner.bare_value()
        params.setdefault(name, value)
        scanner.skip_ws()
        if scanner.at_end():
            return
        if scanner.peek() != ",":
            raise ChallengeError(f"expected ',' in WWW-Authenticate at offset {scanner.pos}")
        save = scanner.pos
        _skip_separators(scanner)
        if scanner.at_end():
            return
        if not _looks_like_param(scanner):
            # The next item is a new challenge.
            scanner.pos = save
            return
