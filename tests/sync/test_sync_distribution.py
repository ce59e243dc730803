"""``regtool sync`` with distribution 2.8.2 (no referrers API: the tag schema is written for real) and a directory:
serve -> distribution and a no-op re-run, the air gap crossed registry -> directory -> registry with every digest
kept, and signatures and SBOMs arriving with their image."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.client.v2.referrers import schema_tag
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from tests.cli.support import assert_user_error, in_process
from tests.support.distribution import Distribution
from tests.support.images import write_image
from tests.support.serve import run_serve
from tests.sync.seed import REPOSITORIES, TAGS, seed
from tests.sync.support import digest_at, tags_at
from tests.sync.test_referrers import attach, push_blob

pytestmark = pytest.mark.interop


def http_events(stderr: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "http"]


def test_serve_to_distribution_and_a_no_op_rerun_of_two_heads_per_tag(
    tmp_path: Path, distribution: Distribution
) -> None:
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        pushed = seed(source.host, tmp_path / "work")
        first = in_process("sync", source.host, f"{distribution.host}/mirror", "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["failed"] == 0
        for repository in REPOSITORIES:
            assert tags_at(distribution.url, f"mirror/{repository}") == sorted(TAGS)
            for tag in TAGS:
                assert digest_at(distribution.url, f"mirror/{repository}", tag) == str(pushed[f"{repository}:{tag}"])

        again = in_process("sync", source.host, f"{distribution.host}/mirror", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["skipped"] == 30
        at_dest = Counter(
            (str(e["method"]), "manifests" if "/manifests/" in str(e["url"]) else str(e["url"]).rsplit("/", 2)[-2])
            for e in http_events(again.stderr)
            if distribution.host in str(e["url"])
        )
        assert at_dest[("HEAD", "manifests")] == 30
        assert sum(at_dest.values()) - at_dest[("HEAD", "manifests")] <= 2  # the ping (https, then http)


def test_the_air_gap_round_trip_keeps_every_digest(tmp_path: Path, distribution: Distribution) -> None:
    carried = tmp_path / "carried"
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        pushed = seed(source.host, tmp_path / "work")
        out = in_process("sync", source.host, str(carried))
        assert out.returncode == 0, out.stderr
    # One OCI layout per repository, each tag a ref name pointing at the source's digest.
    for repository in REPOSITORIES:
        layout = OciLayout.open(carried / repository)
        assert sorted(layout.ref_names()) == sorted(TAGS)
        for tag in TAGS:
            assert layout.resolve(tag).digest == pushed[f"{repository}:{tag}"]
    again = in_process("sync", str(carried), f"{distribution.host}/airgap")
    assert again.returncode == 0, again.stderr
    for repository in REPOSITORIES:
        for tag in TAGS:
            assert digest_at(distribution.url, f"airgap/{repository}", tag) == str(pushed[f"{repository}:{tag}"])
    rerun = in_process("sync", str(carried), f"{distribution.host}/airgap")
    assert rerun.returncode == 0, rerun.stderr
    assert "30 image(s): 30 skipped" in rerun.stdout


def test_signatures_and_sboms_arrive_with_their_image_as_the_tag_schema(
    tmp_path: Path, distribution: Distribution
) -> None:
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        attached = attach(source.url, "team/signed", tag_schema=False)
        bare = in_process("sync", f"{source.host}/team/signed", f"{distribution.host}/bare", "--no-referrers")
        assert bare.returncode == 0, bare.stderr
        assert tags_at(distribution.url, "bare/team/signed") == ["1.0"]

        proc = in_process("sync", f"{source.host}/team/signed", distribution.host, "--json")
        assert proc.returncode == 0, proc.stderr
        (result,) = json.loads(proc.stdout)["results"]
        assert result["referrers"] == 4
        # Later, an attestation is attached by cosign's tag: the unchanged image is skipped, the attestation follows.
        with httpx.Client(base_url=source.url, timeout=30) as client:
            config = push_blob(client, "team/signed", mt.EMPTY_JSON)
            envelope = b'{"payloadType": "application/vnd.in-toto+json"}'
            layer = push_blob(client, "team/signed", envelope)
            attestation = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_EMPTY, "digest": config, "size": 2},
                    "layers": [
                        {"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": layer, "size": len(envelope)}
                    ],
                }
            ).encode()
            att_tag = schema_tag(attached.subject) + ".att"
            put = client.put(
                f"/v2/team/signed/manifests/{att_tag}", content=attestation, headers={"Content-Type": mt.OCI_MANIFEST}
            )
            assert put.status_code == 201, put.text
        later = in_process("sync", f"{source.host}/team/signed", distribution.host, "--json")
        assert later.returncode == 0, later.stderr
        (result,) = json.loads(later.stdout)["results"]
        assert (result["status"], result["referrers"]) == ("skipped", 1)
        assert digest_at(distribution.url, "team/signed", att_tag) == str(Digest.of(attestation))
        quiet = in_process("sync", f"{source.host}/team/signed", distribution.host, "--json")
        assert [(r["status"], r["referrers"]) for r in json.loads(quiet.stdout)["results"]] == [("skipped", 0)]
    name = "team/signed"
    for digest in (attached.signature, attached.sbom, attached.sbom_signature, attached.cosign):
        assert digest_at(distribution.url, name, str(digest)) == str(digest)
    assert digest_at(distribution.url, name, schema_tag(attached.subject) + ".sig") == str(attached.cosign)
    accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
    index = httpx.get(f"{distribution.url}/v2/{name}/manifests/{schema_tag(attached.subject)}", headers=accept).json()
    assert {entry["digest"] for entry in index["manifests"]} == {str(attached.signature), str(attached.sbom)}
    nested = httpx.get(f"{distribution.url}/v2/{name}/manifests/{schema_tag(attached.sbom)}", headers=accept).json()
    assert [entry["digest"] for entry in nested["manifests"]] == [str(attached.sbom_signature)]


def test_signatures_and_sboms_cross_the_air_gap_with_their_image(tmp_path: Path, distribution: Distribution) -> None:
    carried = tmp_path / "carried"
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        attached = attach(source.url, "team/signed", tag_schema=False)
        out = in_process("sync", f"{source.host}/team/signed", str(carried), "--json")
        assert out.returncode == 0, out.stderr
        (result,) = json.loads(out.stdout)["results"]
        assert result["referrers"] == 4
    layout = OciLayout.open(carried / "team/signed")
    # The image and cosign's tag by name; the referrers by subject as untagged entries, each manifest whole.
    assert sorted(layout.ref_names()) == sorted(["1.0", schema_tag(attached.subject) + ".sig"])
    for digest in (attached.signature, attached.sbom, attached.sbom_signature, attached.cosign):
        manifest = layout.manifest(digest)
        assert all(layout.blobs.has(d.digest) for d in (manifest.config, *manifest.layers) if d is not None)

    back = in_process("sync", str(carried), distribution.host, "--json")
    assert back.returncode == 0, back.stderr
    (result,) = json.loads(back.stdout)["results"]
    assert (result["status"], result["referrers"]) == ("copied", 4)
    name = "team/signed"
    assert digest_at(distribution.url, name, "1.0") == str(attached.subject)
    for digest in (attached.signature, attached.sbom, attached.sbom_signature, attached.cosign):
        assert digest_at(distribution.url, name, str(digest)) == str(digest)
    assert digest_at(distribution.url, name, schema_tag(attached.subject) + ".sig") == str(attached.cosign)
    accept = {"Accept": mt.OCI_INDEX}
    index = httpx.get(f"{distribution.url}/v2/{name}/manifests/{schema_tag(attached.subject)}", headers=accept).json()
    assert {entry["digest"] for entry in index["manifests"]} == {str(attached.signature), str(attached.sbom)}
    nested = httpx.get(f"{distribution.url}/v2/{name}/manifests/{schema_tag(attached.sbom)}", headers=accept).json()
    assert [entry["digest"] for entry in nested["manifests"]] == [str(attached.sbom_signature)]
    again = in_process("sync", str(carried), distribution.host, "--json")
    assert [(r["status"], r["referrers"]) for r in json.loads(again.stdout)["results"]] == [("skipped", 0)]


def _put_tag(url: str, repository: str, source_tag: str, tag: str) -> None:
    """Tag the manifest ``source_tag`` names as ``tag`` too (the same digest)."""
    raw = httpx.get(f"{url}/v2/{repository}/manifests/{source_tag}", headers={"Accept": mt.MANIFEST_ACCEPT})
    put = httpx.put(
        f"{url}/v2/{repository}/manifests/{tag}",
        content=raw.content,
        headers={"Content-Type": raw.headers["Content-Type"]},
    )
    assert put.status_code == 201, put.text


def test_prune_on_a_registry_that_deletes_only_by_digest(tmp_path: Path, distribution: Distribution) -> None:
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        pushed = seed(source.host, tmp_path / "work")
        assert in_process("sync", f"{source.host}/team/app", distribution.host, "--tags", "1.*").returncode == 0
        # "1.9-old" names a manifest of its own; "1.9-alias" the manifest of 1.0.0, which stays; "1.8-a" and
        # "1.8-b" one manifest between them, both gone at the source; "local" is outside the filter: not this
        # sync's to prune, though the source lacks it.
        for tag in ("1.9-old", "local"):
            write_image(tmp_path / tag, tag, [{"own.txt": tag.encode()}])
            assert in_process("push", f"{tmp_path / tag}:{tag}", f"{distribution.host}/team/app:{tag}").returncode == 0
        write_image(tmp_path / "pair", "1.8-a", [{"pair.txt": b"two tags, one manifest"}])
        assert in_process("push", f"{tmp_path / 'pair'}:1.8-a", f"{distribution.host}/team/app:1.8-a").returncode == 0
        _put_tag(distribution.url, "team/app", "1.8-a", "1.8-b")
        _put_tag(distribution.url, "team/app", "1.0.0", "1.9-alias")

        proc = in_process(
            "sync", f"{source.host}/team/app", distribution.host, "--tags", "1.*", "--prune", "--keep-going"
        )
    message = assert_user_error(proc, 1, "1 of 8 failed", "team/app:1.9-alias", "also tagged 1.0.0")
    assert "team/app:1.9-old" not in message and "1.8-" not in message
    pruned = sorted(line.split()[3] for line in proc.stdout.splitlines() if line.startswith("pruned "))
    assert pruned == [f"{distribution.host}/team/app:{tag}" for tag in ("1.8-a", "1.8-b", "1.9-old")]
    assert tags_at(distribution.url, "team/app") == ["1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.9-alias", "local"]
    assert digest_at(distribution.url, "team/app", "1.0.0") == str(pushed["team/app:1.0.0"])


def test_prune_keeps_a_tag_this_run_copied_that_names_the_pruned_manifest(
    tmp_path: Path, distribution: Distribution
) -> None:
    # A release promoted at the source: 1.0-rc tagged 1.0 as well, then 1.0-rc deleted there.
    with run_serve(tmp_path / "source", enable_v1=False) as source:
        write_image(tmp_path / "img", "1.0-rc", [{"app.txt": b"the release"}])
        assert in_process("push", f"{tmp_path / 'img'}:1.0-rc", f"{source.host}/team/app:1.0-rc").returncode == 0
        assert in_process("sync", f"{source.host}/team/app", distribution.host).returncode == 0
        _put_tag(source.url, "team/app", "1.0-rc", "1.0")
        digest = digest_at(source.url, "team/app", "1.0")
        assert httpx.delete(f"{source.url}/v2/team/app/manifests/1.0-rc").status_code == 202

        proc = in_process("sync", f"{source.host}/team/app", distribution.host, "--prune")
    # The registry deletes only by digest, and 1.0, copied by this very run, names that digest: 1.0-rc cannot
    # go alone, and the run says so instead of deleting the release with it.
    assert_user_error(proc, 1, "cannot prune", "team/app:1.0-rc", "also tagged 1.0")
    assert any(line.startswith("copied ") and "team/app:1.0 -> " in line for line in proc.stdout.splitlines())
    assert tags_at(distribution.url, "team/app") == ["1.0", "1.0-rc"]
    assert digest_at(distribution.url, "team/app", "1.0") == digest
