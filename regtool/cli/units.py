"""Human units for sizes, shared by the progress renderers and the result printers (no rich import here)."""

from __future__ import annotations

__all__ = ["format_bytes"]


def format_bytes(size: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, as registries and docker count layer sizes."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
