"""The v1 image store's name escaping: any repository name maps inside ``v1/`` and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regtool.server.storage import paths
from regtool.server.storage.v1images import V1Error, _escape_component, unescape_component, v1_repository_dir

components = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda c: "/" not in c
)


@given(components)
def test_any_component_is_one_safe_path_component(component: str) -> None:
    escaped = _escape_component(component)
    assert paths.check_path(f"v1/repositories/{escaped}") == f"v1/repositories/{escaped}"
    assert "/" not in escaped
    assert unescape_component(escaped) == component


def test_repository_dirs() -> None:
    assert v1_repository_dir("busybox") == "v1/repositories/_library/_busybox"
    assert v1_repository_dir("team/app") == "v1/repositories/_team/_app"
    assert v1_repository_dir("a/..") == "v1/repositories/_a/_.."
    assert v1_repository_dir("ns/%$_-x") == "v1/repositories/_ns/_=25=24_-x"
    for bad in ("", "a//b", "x" * 300):
        with pytest.raises(V1Error):
            v1_repository_dir(bad)
