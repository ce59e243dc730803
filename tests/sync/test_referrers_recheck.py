"""``--referrers-recheck``: referrers attached by the OCI referrers API alone (no tag) to an image that did not
change reach the target, serve -> distribution 2.8.2 (no API: the tag schema is written), serve -> serve, and
through a directory both ways; without the option a no-op re-run stays HEAD-only, counted at the servers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.client.v2.referrers import find_referrers, schema_tag
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.manifest import parse_manifest
from regtool.reference import Reference
from tests.cli.support import assert_user_error, in_process
from tests.support.distribution import Distribution
from tests.support.images import write_image
from tests.support.serve import RunningServe, run_serve
from tests.sync.support import digest_at, kinds
from tests.sync.test_referrers import SBOM, SIGNATURE, push_referrer

TAGS = ("1.0", "2.0")
SIGNED = "1.0"


@dataclass(frozen=True)
class Attached:
    """Referrers attached by subject through the API after the first sync: a signature and an SBOM of the image,
    and a signature of the SBOM."""

    subject: Digest
    signature: Digest
    sbom: Digest
    sbom_signature: Digest

    @property
    def all(self) -> set[Digest]:
        return {self.signature, self.sbom, self.sbom_signature}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[RunningServe]:
    """A serve with ``team/app`` tagged 1.0 and 2.0, no referrers yet."""
    with run_serve(tmp_path / "source", enable_v1=False) as server:
        for tag in TAGS:
            write_image(tmp_path / "images", tag, [{"app.txt": f"app {tag}".encode()}])
            pushed = in_process("push", f"{tmp_path / 'images'}:{tag}", f"{server.host}/team/app:{tag}")
            assert pushed.returncode == 0, pushed.stderr
        yield server


def attach_by_api(server: RunningServe) -> Attached:
    """Attach the referrers to ``team/app:1.0`` by ``subject`` alone: no tag-schema or cosign tag appears."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        got = client.get("/v2/team/app/manifests/1.0", headers={"Accept": mt.MANIFEST_ACCEPT})
        subject = parse_manifest(got.content, got.headers["Content-Type"]).descriptor()
        subject_digest = subject.digest
        signature = push_referrer(client, "team/app", SIGNATURE, b"signed later", subject)
        sbom = push_referrer(client, "team/app", SBOM, b'{"spdxVersion": "SPDX-2.3"}', subject)
        sbom_signature = push_referrer(client, "team/app", SIGNATURE, b"sbom signed later", sbom)
    tags = httpx.get(f"{server.url}/v2/team/app/tags/list").json()["tags"]
    assert sorted(tags) == sorted(TAGS)
    return Attached(subject_digest, signature.digest, sbom.digest, sbom_signature.digest)


def referrers_at(host: str, repository: str, subject: Digest) -> set[Digest]:
    """What refers to ``subject`` directly (cosign tags aside: none here)."""

    async def main() -> set[Digest]:
        async with Client() as client:
            return {
                r.digest
                for r in await find_referrers(client.api, Reference(host, repository), subject, recursive=False)
            }

    return anyio.run(main)


def sync_json(*args: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    proc = in_process("sync", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return out, {r["source"].rsplit(":", 1)[1]: r for r in out["results"]}, proc.stderr


def http_kinds(stderr: str, host: str) -> Counter[str]:
    """``METHOD kind`` of the client's requests to ``host`` (its ``http`` events), as ``kinds`` counts a server's."""
    counted: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        url = str(event.get("url", ""))
        if event.get("event") != "http" or host not in url:
            continue
        parts = httpx.URL(url).path.rstrip("/").split("/")
        kind = "ping" if len(parts) <= 2 else parts[-2] if "uploads" not in parts else "uploads"
        counted[f"{event['method']} {kind}"] += 1
    return counted


def without_pings(counted: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counted.items() if k != "GET ping"})


@pytest.mark.interop
def test_serve_to_distribution_recheck_writes_the_tag_schema(source: RunningServe, distribution: Distribution) -> None:
    target = f"{distribution.host}/mirror"
    first, _, _ = sync_json(f"{source.host}/team/app", target)
    assert first["copied"] + first["mounted"] == 2
    attached = attach_by_api(source)

    # Without the option: the unchanged image is skipped after one HEAD at each end, the referrers stay behind.
    source.requests.clear()
    plain, results, stderr = sync_json(f"{source.host}/team/app", target)
    assert plain["skipped"] == 2 and plain["referrers"] == 0 and plain["referrers_rechecked"] == 0
    assert "recheck_requests" not in results[SIGNED]
    assert without_pings(kinds(source.requests.events())) == {"GET tags": 1, "HEAD manifests": 2}
    assert without_pings(http_kinds(stderr, distribution.host)) == {"HEAD manifests": 2}
    assert referrers_at(distribution.host, "mirror/team/app", attached.subject) == set()

    # A dry run lists what it would copy and writes nothing.
    dry, results, _ = sync_json(f"{source.host}/team/app", target, "--referrers-recheck", "--dry-run")
    assert dry["skipped"] == 2 and dry["referrers_rechecked"] == 2
    assert {m.split()[0] for m in results[SIGNED]["referrers_missing"]} == {str(d) for d in attached.all}
    assert results["2.0"]["referrers_missing"] == []
    assert referrers_at(distribution.host, "mirror/team/app", attached.subject) == set()

    source.requests.clear()
    done, results, stderr = sync_json(f"{source.host}/team/app", target, "--referrers-recheck")
    assert done["skipped"] == 2 and done["referrers"] == 3
    assert results[SIGNED]["referrers"] == 3 and results["2.0"]["referrers"] == 0
    assert referrers_at(distribution.host, "mirror/team/app", attached.subject) == {attached.signature, attached.sbom}
    assert referrers_at(distribution.host, "mirror/team/app", attached.sbom) == {attached.sbom_signature}
    for digest in attached.all:
        assert digest_at(distribution.url, "mirror/team/app", str(digest)) == str(digest)
    tags = httpx.get(f"{distribution.url}/v2/mirror/team/app/tags/list").json()["tags"]
    assert sorted(tags) == sorted([*TAGS, schema_tag(attached.subject), schema_tag(attached.sbom)])
    at_source = kinds(source.requests.events())
    # One referrers request per tag and one per referrer found (the recursion), at the source.
    assert at_source["GET referrers"] == 2 + 3

    # Once the target has them, a recheck copies nothing and costs what --help says, counted at both ends.
    source.requests.clear()
    again, results, stderr = sync_json(f"{source.host}/team/app", target, "--referrers-recheck")
    assert again["referrers"] == 0 and again["skipped"] == 2
    at_source = without_pings(kinds(source.requests.events()))
    at_target = without_pings(http_kinds(stderr, distribution.host))
    assert at_source == {"GET tags": 1, "HEAD manifests": 2, "GET referrers": 5}
    # A HEAD per tag, a HEAD per referrer found; the target's lack of the API (one 404) and its two
    # tag-schema indexes read to merge into (nothing new, so nothing written).
    assert at_target == {"HEAD manifests": 2 + 3, "GET referrers": 1, "GET manifests": 2}
    recheck = sum(r["recheck_requests"] for r in results.values())
    assert again["recheck_requests"] == recheck == 5 + 3 + 1 + 2
    assert [results[t]["recheck_requests"] for t in TAGS] == [4 + 3 + 1 + 2, 1]


def test_serve_to_serve_recheck_uses_the_api_at_both_ends(source: RunningServe, tmp_path: Path) -> None:
    with run_serve(tmp_path / "target", enable_v1=False) as target:
        first, _, _ = sync_json(f"{source.host}/team/app", target.host)
        assert first["failed"] == 0
        attached = attach_by_api(source)

        source.requests.clear()
        target.requests.clear()
        plain = in_process("sync", f"{source.host}/team/app", target.host)
        assert plain.returncode == 0, plain.stderr
        assert "2 image(s): 2 skipped" in plain.stdout and "rechecked" not in plain.stdout
        assert without_pings(kinds(source.requests.events())) == {"GET tags": 1, "HEAD manifests": 2}
        assert without_pings(kinds(target.requests.events())) == {"HEAD manifests": 2}
        assert referrers_at(target.host, "team/app", attached.subject) == set()

        source.requests.clear()
        target.requests.clear()
        done = in_process("sync", f"{source.host}/team/app", target.host, "--referrers-recheck")
        assert done.returncode == 0, done.stderr
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("skipped") and ":1.0 " in line]
        assert line.endswith("3 referrer(s) copied")
        assert referrers_at(target.host, "team/app", attached.subject) == {attached.signature, attached.sbom}
        assert referrers_at(target.host, "team/app", attached.sbom) == {attached.sbom_signature}
        for digest in attached.all:
            assert digest_at(target.url, "team/app", str(digest)) == str(digest)
        at_target = kinds(target.requests.events())
        # The API at the target: no tag-schema index is written.
        assert at_target["PUT manifests"] == 3
        assert target.requests and all("sha256-" not in e.path for e in target.requests.events())

        source.requests.clear()
        target.requests.clear()
        again = in_process("sync", f"{source.host}/team/app", target.host, "--referrers-recheck")
        assert again.returncode == 0, again.stderr
        at_source = without_pings(kinds(source.requests.events()))
        at_target = without_pings(kinds(target.requests.events()))
        assert at_source == {"GET tags": 1, "HEAD manifests": 2, "GET referrers": 5}
        # A HEAD per tag and per referrer found; one referrers request tells the target has the API.
        assert at_target == {"HEAD manifests": 2 + 3, "GET referrers": 1}
        assert "referrers rechecked for 2 unchanged tag(s): 9 request(s)" in again.stdout

        # With --immutable-tags SOURCE is not asked about the tags: the target's digest names the subject.
        with httpx.Client(base_url=source.url, timeout=30) as client:
            subject = parse_manifest(
                client.get(f"/v2/team/app/manifests/{attached.subject}", headers={"Accept": mt.MANIFEST_ACCEPT}).content
            ).descriptor()
            vex = push_referrer(client, "team/app", "application/vnd.example.vex", b"vex", subject)
        source.requests.clear()
        kept, results, _ = sync_json(f"{source.host}/team/app", target.host, "--immutable-tags", "--referrers-recheck")
        assert kept["skipped"] == 2 and kept["referrers"] == 1
        assert results[SIGNED]["reason"] == "immutable tag present" and results[SIGNED]["referrers"] == 1
        assert not [e.path for e in source.requests.events() if e.path.endswith(("/manifests/1.0", "/manifests/2.0"))]
        assert vex.digest in referrers_at(target.host, "team/app", attached.subject)
        assert digest_at(target.url, "team/app", str(vex.digest)) == str(vex.digest)


def test_a_recheck_carries_a_late_signature_across_a_directory(source: RunningServe, tmp_path: Path) -> None:
    carried = tmp_path / "carried"
    with run_serve(tmp_path / "target", enable_v1=False) as target:
        assert in_process("sync", f"{source.host}/team/app", str(carried)).returncode == 0
        assert in_process("sync", str(carried), target.host).returncode == 0
        attached = attach_by_api(source)
        layout = OciLayout.open(carried / "team/app")

        plain = in_process("sync", f"{source.host}/team/app", str(carried))
        assert plain.returncode == 0, plain.stderr
        assert not attached.all & {d.digest for d in layout.entries()}

        dry = in_process("sync", f"{source.host}/team/app", str(carried), "--referrers-recheck", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert all(str(d) in dry.stdout for d in attached.all)
        assert not attached.all & {d.digest for d in layout.entries()}

        into = in_process("sync", f"{source.host}/team/app", str(carried), "--referrers-recheck")
        assert into.returncode == 0, into.stderr
        assert attached.all <= {d.digest for d in layout.entries()}
        for digest in attached.all:
            assert layout.manifest(digest).digest == digest

        # Out of the directory no recheck is needed: the layout shows its referrers without a request (each
        # untagged entry names its subject), so the late signature follows its unchanged image.
        target.requests.clear()
        plain_out = in_process("sync", str(carried), target.host)
        assert plain_out.returncode == 0, plain_out.stderr
        assert "1.0" in plain_out.stdout and "referrer" in plain_out.stdout
        assert "PUT manifests" in without_pings(kinds(target.requests.events()))
        assert referrers_at(target.host, "team/app", attached.subject) == {attached.signature, attached.sbom}
        for digest in attached.all:
            assert digest_at(target.url, "team/app", str(digest)) == str(digest)

        # Nothing is left for a recheck to find.
        out = in_process("sync", str(carried), target.host, "--referrers-recheck", "--dry-run")
        assert out.returncode == 0, out.stderr
        assert not any(str(d) in out.stdout for d in attached.all)


def test_the_recheck_without_referrers_is_refused(tmp_path: Path) -> None:
    refused = in_process("sync", "127.0.0.1:1/a", str(tmp_path / "out"), "--referrers-recheck", "--no-referrers")
    assert_user_error(refused, 2, "--referrers-recheck", "--no-referrers")
    assert not (tmp_path / "out").exists()
