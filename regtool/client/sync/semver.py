"""Semantic-version tags and ranges, as skopeo sync's ``images-by-semver`` (Masterminds/semver) reads them.

A tag is a version when it reads ``[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]``; other tags never match.
A range is alternatives joined by ``||``, each a list of constraints joined by spaces or commas, all of which
must hold. A constraint is ``OP VERSION`` with OP one of ``= != > >= < <= ~ ^`` (none means ``=``), where an
``x``, ``X`` or ``*`` part, or a missing one, is a wildcard; ``A - B`` is ``>=A <=B``:

- ``^1.2.3`` is ``>=1.2.3 <2.0.0``; ``^0.2.3`` is ``>=0.2.3 <0.3.0``; ``^0.0.3`` is ``>=0.0.3 <0.0.4``;
- ``~1.2.3`` is ``>=1.2.3 <1.3.0``; ``~1`` is ``>=1.0.0 <2.0.0``;
- ``1.2``, ``1.2.x`` and ``=1.2.*`` are ``>=1.2.0 <1.3.0``.

A pre-release (``1.3.0-rc.1``) matches only a constraint that names a pre-release itself, as in Masterminds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regtool.errors import UsageError

__all__ = ["SemverRange", "Version", "parse_version"]

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*])(?:\.(?P<patch>\d+|[xX*]))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-.]+)?$"
)
_CONSTRAINT = re.compile(r"^(?P<op>!=|>=|<=|=>|=<|>|<|=|~>|~|\^)?\s*(?P<version>\S+)$")
_WILD = {"x", "X", "*"}


@dataclass(frozen=True, slots=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    # Sort key of the pre-release: a release sorts after every pre-release of the same numbers.
    pre_key: tuple[tuple[int, int | str], ...] = ((2, 0),)

    @property
    def is_prerelease(self) -> bool:
        return self.pre_key != ((2, 0),)


def _pre_key(pre: str | None) -> tuple[tuple[int, int | str], ...]:
    if not pre:
        return ((2, 0),)
    # Identifiers compare numerically when numeric, numbers before words (semver 2.0.0 §11); the leading 1
    # puts every pre-release before the release's (2, 0).
    parts: list[tuple[int, int | str]] = [(1, 0)]
    for item in pre.split("."):
        parts.append((0, int(item)) if item.isdigit() else (1, item))
    return tuple(parts)


def parse_version(tag: str) -> Version | None:
    """The version a tag names, or None when it names none."""
    match = _VERSION.match(tag)
    if match is None:
        return None
    return Version(int(match["major"]), int(match["minor"] or 0), int(match["patch"] or 0), _pre_key(match["pre"]))


@dataclass(frozen=True, slots=True)
class _Bound:
    op: str  # one of > >= < <= = !=
    version: Version

    def holds(self, v: Version) -> bool:
        if self.op == ">":
            return v > self.version
        if self.op == ">=":
            return v >= self.version
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == "!=":
            return v != self.version
        return v == self.version


def _lowest(major: int, minor: int, patch: int, pre: str | None) -> Version:
    return Version(major, minor, patch, _pre_key(pre))


def _floor(v: Version) -> Version:
    """The lowest version at or above these numbers, pre-releases included (``<2.0.0`` excludes ``2.0.0-rc``)."""
    return Version(v.major, v.minor, v.patch, ((0, 0),))


def _expand(op: str, text: str, where: str) -> list[_Bound | _Not]:
    match = _PARTIAL.match(text)
    if match is None:
        raise UsageError(f"{where}: {text!r} is not a version")
    raw = [match["major"], match["minor"], match["patch"]]
    known = 0
    for part in raw:
        if part is None or part in _WILD:
            break
        known += 1
    numbers = [int(p) if p is not None and p not in _WILD else 0 for p in raw]
    pre = match["pre"] if known == 3 else None
    base = _lowest(numbers[0], numbers[1], numbers[2], pre)

    def bump(position: int) -> Version:
        n = list(numbers)
        n[position] += 1
        for later in range(position + 1, 3):
            n[later] = 0
        return _floor(Version(n[0], n[1], n[2]))

    if op in {"~", "~>"}:
        return [_Bound(">=", base), _Bound("<", bump(1 if known >= 2 else 0))]
    if op == "^":
        if known == 0:
            return [_Bound(">=", base)]
        if numbers[0] > 0 or known == 1:
            return [_Bound(">=", base), _Bound("<", bump(0))]
        if numbers[1] > 0 or known == 2:
            return [_Bound(">=", base), _Bound("<", bump(1))]
        return [_Bound(">=", base), _Bound("<", bump(2))]
    if known < 3:
        # A wildcard: the constraint speaks of the whole span the known parts leave open.
        if known == 0:
            # "*" is every version; "<*", ">*" and "!=*" are none.
            return [] if op in {"=", ">=", "<="} else [_Bound("<", _floor(base))]
        upper = bump(known - 1)
        if op == "=":
            return [_Bound(">=", base), _Bound("<", upper)]
        if op == "!=":
            return [_Not(base, upper)]
        if op == ">":
            return [_Bound(">=", upper)]
        if op == ">=":
            return [_Bound(">=", base)]
        if op == "<":
            return [_Bound("<", _floor(base))]
        return [_Bound("<", upper)]  # "<="
    return [_Bound(op, base)]


@dataclass(frozen=True, slots=True)
class _Not:
    """``!=1.2``: outside the span [low, high)."""

    low: Version
    high: Version

    def holds(self, v: Version) -> bool:
        return not (self.low <= v < self.high)


@dataclass(frozen=True, slots=True)
class _Alternative:
    bounds: tuple[_Bound | _Not, ...]
    allows_prerelease: bool

    def holds(self, v: Version) -> bool:
        if v.is_prerelease and not self.allows_prerelease:
            return False
        return all(bound.holds(v) for bound in self.bounds)


_OPS = {"=>": ">=", "=<": "<="}
_BARE_OPS = frozenset({"!=", ">=", "<=", "=>", "=<", ">", "<", "=", "~>", "~", "^"})


@dataclass(frozen=True, slots=True)
class SemverRange:
    """A parsed range; ``text`` as given. ``matches(tag)`` says whether a tag's version is inside."""

    text: str
    alternatives: tuple[_Alternative, ...]

    @classmethod
    def parse(cls, text: str, *, where: str = "semver range") -> SemverRange:
        if not text.strip():
            raise UsageError(f"{where}: empty semver range")
        alternatives: list[_Alternative] = []
        for part in text.split("||"):
            tokens = part.replace(",", " ").split()
            if not tokens:
                raise UsageError(f"{where}: empty alternative in {text!r}")
            # Glue an operator standing alone to the version after it (">= 1.0").
            glued: list[str] = []
            for token in tokens:
                if glued and glued[-1] in _BARE_OPS:
                    glued[-1] += token
                else:
                    glued.append(token)
            bounds: list[_Bound | _Not] = []
            prerelease = False
            index = 0
            while index < len(glued):
                token = glued[index]
                if index + 2 < len(glued) and glued[index + 1] == "-":
                    low, high = token, glued[index + 2]
                    bounds += _expand(">=", low, where) + _expand("<=", high, where)
                    prerelease = prerelease or "-" in low or "-" in high
                    index += 3
                    continue
                match = _CONSTRAINT.match(token)
                if match is None:
                    raise UsageError(f"{where}: cannot read {token!r} in {text!r}")
                op = _OPS.get(match["op"] or "=", match["op"] or "=")
                version = match["version"]
                prerelease = prerelease or "-" in version.lstrip("v").split("+")[0]
                bounds += _expand(op, version, where)
                index += 1
            alternatives.append(_Alternative(tuple(bounds), prerelease))
        return cls(text, tuple(alternatives))

    def matches(self, tag: str) -> bool:
        version = parse_version(tag)
        return version is not None and any(alt.holds(version) for alt in self.alternatives)
