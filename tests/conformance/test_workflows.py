"""The official OCI conformance suite, ported (``workflows.py``), on a real regtool serve per storage driver:
each workflow alone, all four in the suite's order on one registry, and each with deletes disabled."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conformance.data import SuiteData
from tests.conformance.workflows import run_discovery, run_management, run_pull, run_push

Workflow = Callable[..., None]
WORKFLOWS: dict[str, Workflow] = {
    "pull": run_pull,
    "push": run_push,
    "discovery": run_discovery,
    "management": run_management,
}


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_workflow(client: httpx.Client, workflow: str) -> None:
    WORKFLOWS[workflow](client, SuiteData.build())


def test_all_workflows_in_the_suites_order(client: httpx.Client) -> None:
    # As the suite runs: one registry, one repository, one set of content, each workflow after the last's teardown.
    data = SuiteData.build()
    for workflow in WORKFLOWS.values():
        workflow(client, data)


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_workflow_with_deletes_disabled(client_without_deletes: httpx.Client, workflow: str) -> None:
    WORKFLOWS[workflow](client_without_deletes, SuiteData.build(), deletes=False)
