"""Names a package exports but imports on first use (a module ``__getattr__``, PEP 562).

A package's ``__getattr__`` calls ``import_on_first_use`` with the table of where each lazy name lives. The value
is then kept in the package's namespace, so only the first use of a name costs an import. ``regtool``,
``regtool.client`` and ``regtool.client.results`` use it, so that a command imports only what it runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["import_on_first_use"]


def import_on_first_use(package: str, name: str, where: Mapping[str, str]) -> Any:
    """``name`` of ``package``, imported from the module ``where`` names for it (AttributeError if none)."""
    module = where.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value
