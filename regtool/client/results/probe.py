"""What ``Client.probe`` returns: the verdict and what each probe request saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regtool.client.results.fields import fields_json

__all__ = ["ProbeEvidence", "ProbeResult", "V1Info", "V2Info"]


@dataclass(frozen=True, slots=True)
class ProbeEvidence:
    """What one probe request saw: an HTTP status and notable headers, or the transport error."""

    url: str
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)

    def __str__(self) -> str:
        seen = f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"
        return f"{self.url}: {seen}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True, slots=True)
class V2Info:
    """The v2 API as ``GET /v2/`` showed it. ``auth_scheme`` is "bearer"/"basic" when it answered 401."""

    found: bool
    api_version: str | None = None
    status: int | None = None
    auth_scheme: str | None = None
    realm: str | None = None
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "api_version": self.api_version,
            "status": self.status,
            "auth": None
            if self.auth_scheme is None
            else {"scheme": self.auth_scheme, "realm": self.realm, "service": self.service},
        }


@dataclass(frozen=True, slots=True)
class V1Info:
    """The v1 API as ``GET /v1/_ping`` showed it."""

    found: bool
    version: str | None = None
    standalone: bool | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Which registry APIs answer at ``registry``: ``verdict`` is "v2", "v1", "both" or "neither"."""

    registry: str
    scheme: str | None
    v2: V2Info
    v1: V1Info
    evidence: tuple[ProbeEvidence, ...] = ()

    @property
    def verdict(self) -> str:
        if self.v2.found and self.v1.found:
            return "both"
        if self.v2.found:
            return "v2"
        if self.v1.found:
            return "v1"
        return "neither"

    @property
    def found(self) -> bool:
        return self.verdict != "neither"

    @property
    def base_url(self) -> str | None:
        return f"{self.scheme}://{self.registry}" if self.scheme else None

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "scheme": self.scheme,
            "verdict": self.verdict,
            "v2": self.v2.to_json(),
            "v1": self.v1.to_json(),
            "evidence": [e.to_json() for e in self.evidence],
        }
