"""What the client's operations return: frozen values with ``to_json()`` (what ``--json`` prints).

The CLI renders the fields for humans and prints ``to_json()`` for machines; both come from here so they agree.
One module per operation (``probe``, ``transfer``: pull, push and copy, ``image``: inspect), each loaded on the
first use of one of its names here: creating a frozen dataclass is a good part of what importing a module costs
a one-shot command, and a command only ever returns its own results.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regtool.client.results.fields import fields_json
    from regtool.client.results.image import InspectResult, LayerInfo
    from regtool.client.results.probe import ProbeEvidence, ProbeResult, V1Info, V2Info
    from regtool.client.results.transfer import CopyResult, PullResult, PushResult

__all__ = [
    "CopyResult",
    "InspectResult",
    "LayerInfo",
    "ProbeEvidence",
    "ProbeResult",
    "PullResult",
    "PushResult",
    "V1Info",
    "V2Info",
    "fields_json",
]

_MODULE_OF = {
    "CopyResult": "transfer",
    "InspectResult": "image",
    "LayerInfo": "image",
    "ProbeEvidence": "probe",
    "ProbeResult": "probe",
    "PullResult": "transfer",
    "PushResult": "transfer",
    "V1Info": "probe",
    "V2Info": "probe",
    "fields_json": "fields",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
