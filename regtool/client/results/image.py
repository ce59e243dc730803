"""What ``Client.inspect`` returns: an image as the registry describes it, with its layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regtool.client.results.fields import fields_json
from regtool.digest import Digest

__all__ = ["InspectResult", "LayerInfo"]


@dataclass(frozen=True, slots=True)
class LayerInfo:
    digest: Digest
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class InspectResult:
    """An image as the registry describes it.

    For an index, ``platforms`` lists its entries and the image fields describe the selected platform's
    manifest (``platform``, default the host's); ``digest``/``media_type`` are always those of ``reference``.
    """

    reference: str
    digest: Digest
    media_type: str
    platforms: tuple[str, ...] = ()
    platform: str | None = None
    manifest_digest: Digest | None = None
    config_digest: Digest | None = None
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    layers: tuple[LayerInfo, ...] = ()

    @property
    def size(self) -> int:
        """Sum of the layer sizes (compressed, as stored)."""
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {**fields_json(self), "size": self.size}
