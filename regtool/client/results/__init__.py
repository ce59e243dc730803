"""What the client's operations return: frozen values with ``to_json()`` (what ``--json`` prints).

The CLI renders the fields for humans and prints ``to_json()`` for machines; both come from here so they agree.
One module per operation (``probe``, ``transfer``: pull, push and copy, ``image``: inspect), each loaded on the
first use of one of its names here: creating a frozen dataclass is a good part of what importing a module costs
a one-shot command, and a command only ever returns its own results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regtool.lazy import import_on_first_use

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
    "CopyResult": "regtool.client.results.transfer",
    "InspectResult": "regtool.client.results.image",
    "LayerInfo": "regtool.client.results.image",
    "ProbeEvidence": "regtool.client.results.probe",
    "ProbeResult": "regtool.client.results.probe",
    "PullResult": "regtool.client.results.transfer",
    "PushResult": "regtool.client.results.transfer",
    "V1Info": "regtool.client.results.probe",
    "V2Info": "regtool.client.results.probe",
    "fields_json": "regtool.client.results.fields",
}


def __getattr__(name: str) -> Any:
    return import_on_first_use(__name__, name, _MODULE_OF)
