"""``regtool serve gc`` on a store filled by regtool pushes: what is kept, what goes, the bytes freed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from regtool import mediatypes as mt
from tests.cli.support import in_process
from tests.gc.conftest import Filled, assert_pulls_identical, snapshot, stored_blobs


def _gc(root: Path, *args: str) -> dict[str, Any]:
    done = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--json", *args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def _manifest_status(url: str, repo: str, reference: object) -> int:
    accept = {"Accept": f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"}
    return httpx.get(f"{url}/v2/{repo}/manifests/{reference}", headers=accept).status_code


def _referrers(url: str, repo: str, subject: object) -> list[str]:
    index = httpx.get(f"{url}/v2/{repo}/referrers/{subject}").json()
    return [m["digest"] for m in index["manifests"]]


def test_default_keeps_tagged_untagged_and_live_referrers(filled: Filled, tmp_path: Path) -> None:
    scene, url = filled.scene, filled.server.url
    report = _gc(filled.root)
    assert stored_blobs(filled.root) == scene.live_default
    assert report["bytes_freed"] == scene.freed(scene.live_default)
    counts = report["counts"]
    assert counts == {"blob": len(scene.blobs) - len(scene.live_default), "link": 6, "manifest": 1}
    # The referrer of the deleted D went; those of A (tagged) and C (untagged, kept) stay.
    assert _manifest_status(url, "app", scene.referrers["D"]) == 404
    assert _referrers(url, "app", scene.tags["app:1"]) == [str(scene.referrers["A"])]
    assert _manifest_status(url, "app", scene.referrers["C"]) == 200
    assert httpx.get(f"{url}/v2/_catalog").json()["repositories"] == ["app", "gone", "multi"]
    assert_pulls_identical(filled, tmp_path)


def test_delete_untagged_removes_untagged_and_their_referrers(filled: Filled, tmp_path: Path) -> None:
    scene, url = filled.scene, filled.server.url
    report = _gc(filled.root, "--delete-untagged")
    assert stored_blobs(filled.root) == scene.live_untagged
    assert report["bytes_freed"] == scene.freed(scene.live_untagged)
    assert report["counts"]["repository"] == 1
    assert _manifest_status(url, "app", scene.referrers["C"]) == 404
    assert _manifest_status(url, "app", scene.referrers["A"]) == 200
    assert httpx.get(f"{url}/v2/_catalog").json()["repositories"] == ["app", "multi"]
    assert not (filled.root / "repositories" / "gone").exists()
    assert_pulls_identical(filled, tmp_path)
    # A second run finds nothing left to do.
    assert _gc(filled.root, "--delete-untagged")["removed"] == []


def test_dry_run_removes_nothing_and_reports_what_a_run_removes(filled: Filled) -> None:
    before = snapshot(filled.root)
    planned = _gc(filled.root, "--delete-untagged", "--dry-run")
    assert snapshot(filled.root) == before
    assert planned["dry_run"] is True
    done = _gc(filled.root, "--delete-untagged")
    assert sorted(map(str, planned["removed"])) == sorted(map(str, done["removed"]))
    assert planned["bytes_freed"] == done["bytes_freed"]


def test_the_grace_period_keeps_what_was_just_pushed(filled: Filled) -> None:
    before = snapshot(filled.root)
    done = in_process("serve", "gc", "--root", str(filled.root), "--delete-untagged")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nothing to remove\n"
    assert snapshot(filled.root) == before


def test_human_output_names_each_removal_and_the_bytes(filled: Filled) -> None:
    done = in_process("serve", "gc", "--root", str(filled.root), "--delay", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"removed manifest {filled.scene.referrers['D']} from app" in lines
    assert lines[-1].startswith("removed 1 manifest, 6 repository links, ")
    assert lines[-1].endswith(" freed")
