"""Referrers found and carried: the API on ``regtool serve``, the tag schema and cosign's tags on distribution
2.8.2 (which has no referrers API), recursion, the artifact-type filter, and merging into a tag-schema index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.client.v2.referrers import (
    Referrer,
    copy_referrers,
    find_referrers,
    is_referrer_tag,
    schema_tag,
    write_tag_schema,
)
from regtool.digest import Digest
from regtool.errors import ProtocolError
from regtool.manifest import Descriptor, parse_manifest
from regtool.protocol import v2
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.server.helpers import push_manifest
from tests.support.distribution import Distribution, distribution  # noqa: F401
from tests.support.images import BuiltImage, image_manifest
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/spdx+json"
COSIGN_SIG = "application/vnd.dev.cosign.simplesigning.v1+json"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))


@dataclass(frozen=True)
class Attached:
    """An image in ``repo`` with a signature and an SBOM attached by subject, a signature of the SBOM, and a
    cosign-style ``.sig`` tag: each referrer's digest."""

    image: BuiltImage
    signature: Digest
    sbom: Digest
    sbom_signature: Digest
    cosign: Digest

    @property
    def subject(self) -> Digest:
        return self.image.manifest.digest


def push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    """POST then one PUT, keeping the query of the upload's Location (distribution's state is in it)."""
    digest = str(Digest.of(data))
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = httpx.URL(started.headers["location"])
    closed = client.put(location.copy_merge_params({"digest": digest}), content=data)
    assert closed.status_code == 201, closed.text
    return digest


def push_referrer(
    client: httpx.Client,
    name: str,
    artifact_type: str,
    payload: bytes,
    subject: Descriptor | None,
    *,
    tag: str | None = None,
) -> Descriptor:
    """An artifact manifest (empty config, one layer of ``payload``), by subject or by a cosign tag."""
    push_blob(client, name, mt.EMPTY_JSON)
    layer = push_blob(client, name, payload)
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload)}],
    }
    if subject is not None:
        body["artifactType"] = artifact_type
        body["subject"] = subject.to_json()
    raw = json.dumps(body).encode()
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    response = push_manifest(client, name, tag or str(manifest.digest), raw, mt.OCI_MANIFEST)
    assert response.status_code == 201, response.text
    return manifest.descriptor(artifact_type=artifact_type)


def attach(url: str, name: str, *, tag_schema: bool) -> Attached:
    """Push the image and its referrers; ``tag_schema`` also writes the ``sha256-<hex>`` indexes by hand, as a
    client does for a registry without the referrers API."""
    image = image_manifest([{"app.txt": b"app"}])
    with httpx.Client(base_url=url, timeout=30) as client:
        for data in image.blobs.values():
            push_blob(client, name, data)
        response = push_manifest(client, name, "1.0", image.manifest.raw, image.manifest.media_type)
        assert response.status_code == 201, response.text
        subject = image.manifest.descriptor()
        signature = push_referrer(client, name, SIGNATURE, b"signed", subject)
        sbom = push_referrer(client, name, SBOM, b'{"spdxVersion": "SPDX-2.3"}', subject)
        sbom_signature = push_referrer(client, name, SIGNATURE, b"signed sbom", sbom)
        cosign_tag = schema_tag(subject.digest) + ".sig"
        cosign = push_referrer(client, name, COSIGN_SIG, b'{"critical": {}}', None, tag=cosign_tag)
        if tag_schema:
            for parent, entries in ((subject, [signature, sbom]), (sbom, [sbom_signature])):
                index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [e.to_json() for e in entries]}
                put = push_manifest(client, name, schema_tag(parent.digest), json.dumps(index).encode(), mt.OCI_INDEX)
                assert put.status_code == 201, put.text
    return Attached(image, signature.digest, sbom.digest, sbom_signature.digest, cosign.digest)


@pytest.fixture
def serve_pair(tmp_path: Path) -> Iterator[tuple[RunningServe, RunningServe]]:
    with run_serve(tmp_path / "a", enable_v1=False) as a, run_serve(tmp_path / "b", enable_v1=False) as b:
        yield a, b


def found_as(found: list[Referrer]) -> list[tuple[str, str, str | None]]:
    return [(str(r.digest), r.via, r.artifact_type) for r in found]


async def test_serve_answers_a_manifest_put_with_a_subject_with_oci_subject(
    serve_pair: tuple[RunningServe, ...],
) -> None:
    server = serve_pair[0]
    image = image_manifest([{"a": b"a"}])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for data in image.blobs.values():
            push_blob(client, "app", data)
        assert push_manifest(client, "app", "1", image.manifest.raw, image.manifest.media_type).status_code == 201
        plain = push_manifest(client, "app", "2", image.manifest.raw, image.manifest.media_type)
        assert v2.OCI_SUBJECT_HEADER not in plain.headers
        push_blob(client, "app", mt.EMPTY_JSON)
        layer = push_blob(client, "app", b"sig")
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": SIGNATURE,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_JSON_DIGEST, "size": 2},
            "layers": [{"mediaType": SIGNATURE, "digest": layer, "size": 3}],
            "subject": image.manifest.descriptor().to_json(),
        }
        raw = json.dumps(body).encode()
        response = push_manifest(client, "app", str(Digest.of(raw)), raw, mt.OCI_MANIFEST)
    assert response.status_code == 201
    assert response.headers[v2.OCI_SUBJECT_HEADER] == str(image.manifest.digest)


async def test_the_api_on_serve_finds_referrers_recursively_parents_first(
    serve_pair: tuple[RunningServe, ...],
) -> None:
    server = serve_pair[0]
    attached = attach(server.url, "team/app", tag_schema=False)
    repo = Reference(server.host, "team/app")
    async with Client() as client:
        found = await find_referrers(client.api, repo, attached.subject)
        assert client.api.referrers_api[server.host] is True
    by_api = sorted([(attached.signature, SIGNATURE), (attached.sbom, SBOM)], key=lambda p: str(p[0]))
    assert found_as(found) == [
        *[(str(d), "api", t) for d, t in by_api],
        (str(attached.cosign), "cosign", COSIGN_SIG),
        (str(attached.sbom_signature), "api", SIGNATURE),
    ]
    assert found[-1].subject == attached.sbom
    assert found[2].tag == schema_tag(attached.subject) + ".sig"


async def test_artifact_type_filter_applies_at_every_level(serve_pair: tuple[RunningServe, ...]) -> None:
    server = serve_pair[0]
    attached = attach(server.url, "team/app", tag_schema=False)
    repo = Reference(server.host, "team/app")
    async with Client() as client:
        sboms = await find_referrers(client.api, repo, attached.subject, artifact_types=[SBOM])
        signatures = await find_referrers(client.api, repo, attached.subject, artifact_types=[SIGNATURE])
        both = await find_referrers(client.api, repo, attached.subject, artifact_types=[SIGNATURE, SBOM])
        flat = await find_referrers(client.api, repo, attached.subject, recursive=False)
    assert [r.digest for r in sboms] == [attached.sbom]
    # The SBOM is left out, so the signature of the SBOM is not reached.
    assert [r.digest for r in signatures] == [attached.signature]
    assert {r.digest for r in both} == {attached.signature, attached.sbom, attached.sbom_signature}
    assert attached.sbom_signature not in {r.digest for r in flat}
    assert len(flat) == 3


async def test_tag_schema_and_cosign_tags_on_distribution(distribution: Distribution) -> None:  # noqa: F811
    attached = attach(distribution.url, "team/app", tag_schema=True)
    repo = Reference(distribution.host, "team/app")
    async with Client() as client:
        found = await find_referrers(client.api, repo, attached.subject)
        assert client.api.referrers_api[distribution.host] is False
        sboms = await find_referrers(client.api, repo, attached.subject, artifact_types=[SBOM])
        cosign_only = await find_referrers(client.api, repo, attached.subject, artifact_types=[COSIGN_SIG])
    assert found_as(found) == [
        (str(attached.signature), "tag-schema", SIGNATURE),
        (str(attached.sbom), "tag-schema", SBOM),
        (str(attached.cosign), "cosign", COSIGN_SIG),
        (str(attached.sbom_signature), "tag-schema", SIGNATURE),
    ]
    assert [r.digest for r in sboms] == [attached.sbom]
    assert [(r.digest, r.tag) for r in cosign_only] == [(attached.cosign, schema_tag(attached.subject) + ".sig")]


async def test_copy_to_distribution_writes_the_tag_schema_and_back_to_serve_uses_the_api(
    serve_pair: tuple[RunningServe, ...],
    distribution: Distribution,  # noqa: F811
) -> None:
    server, other = serve_pair
    attached = attach(server.url, "team/app", tag_schema=False)
    source = Reference(server.host, "team/app", "1.0")
    middle = Reference(distribution.host, "mirror/app", "1.0")
    back = Reference(other.host, "again/app", "1.0")
    async with Client() as client:
        await client.copy(source, middle)
        copies = await copy_referrers(client.api, source, middle, attached.subject)
        assert all(c.result is not None for c in copies)
        assert client.api.referrers_api[distribution.host] is False
        again = await copy_referrers(client.api, source, middle, attached.subject)
        assert [c.result for c in again] == [None] * 4
        at_middle = await find_referrers(client.api, middle, attached.subject)
        await client.copy(middle, back)
        await copy_referrers(client.api, middle, back, attached.subject)
        at_back = await find_referrers(client.api, back, attached.subject)
        assert client.api.referrers_api[other.host] is True
    wanted = {attached.signature, attached.sbom, attached.sbom_signature, attached.cosign}
    assert {r.digest for r in at_middle} == wanted
    assert {r.via for r in at_middle} == {"tag-schema", "cosign"}
    assert {r.digest for r in at_back} == wanted
    assert {r.via for r in at_back} == {"api", "cosign"}
    # The subject's own tag stays on the subject; referrers are there by digest.
    with httpx.Client(base_url=distribution.url) as http:
        tags = http.get("/v2/mirror/app/tags/list").json()["tags"]
        head = http.head("/v2/mirror/app/manifests/1.0", headers={"Accept": mt.MANIFEST_ACCEPT}).headers[
            v2.CONTENT_DIGEST_HEADER
        ]
    assert head == str(attached.subject)
    assert sorted(tags) == sorted(
        ["1.0", schema_tag(attached.subject), schema_tag(attached.sbom), schema_tag(attached.subject) + ".sig"]
    )


async def test_write_tag_schema_merges_and_does_not_rewrite_an_unchanged_index(distribution: Distribution) -> None:  # noqa: F811
    attached = attach(distribution.url, "team/app", tag_schema=True)
    repo = Reference(distribution.host, "team/app")
    extra = _push_extra(distribution.url, attached)
    async with Client() as client:
        before = await client.api.get_manifest(repo.with_tag(schema_tag(attached.subject)))
        assert await write_tag_schema(client.api, repo, attached.subject, [extra, before.manifests[0]]) is True
        after = await client.api.get_manifest(repo.with_tag(schema_tag(attached.subject)))
        assert await write_tag_schema(client.api, repo, attached.subject, [extra]) is False
        unchanged = await client.api.get_manifest(repo.with_tag(schema_tag(attached.subject)))
    assert [d.digest for d in after.manifests] == [attached.signature, attached.sbom, extra.digest]
    assert after.manifests[2].artifact_type == "application/vnd.example.vex"
    assert unchanged.digest == after.digest


async def test_write_tag_schema_refuses_a_tag_that_holds_an_image(distribution: Distribution) -> None:  # noqa: F811
    attached = attach(distribution.url, "team/app", tag_schema=False)
    repo = Reference(distribution.host, "team/app")
    with httpx.Client(base_url=distribution.url) as http:
        image = attached.image.manifest
        put = push_manifest(http, "team/app", schema_tag(attached.subject), image.raw, image.media_type)
        assert put.status_code == 201
    async with Client() as client:
        with pytest.raises(ProtocolError, match="holds a image, not an index"):
            await write_tag_schema(client.api, repo, attached.subject, [attached.image.manifest.descriptor()])


def _push_extra(url: str, attached: Attached) -> Descriptor:
    with httpx.Client(base_url=url, timeout=30) as client:
        return push_referrer(
            client, "team/app", "application/vnd.example.vex", b"vex", attached.image.manifest.descriptor()
        )


def test_referrer_tags_are_told_from_image_tags() -> None:
    subject = Digest.of(b"x")
    assert is_referrer_tag(schema_tag(subject))
    assert all(is_referrer_tag(f"{schema_tag(subject)}.{s}") for s in ("sig", "att", "sbom"))
    assert not is_referrer_tag("1.0")
    assert not is_referrer_tag(schema_tag(subject) + ".other")
    # The spec's <alg>-<ref>: the subject's encoded digest cut to 64 characters, sha512 too.
    sha512 = Digest.of(b"x", "sha512")
    assert schema_tag(sha512) == f"sha512-{sha512.encoded[:64]}"
    assert is_referrer_tag(schema_tag(sha512))


# -- protocol cases a real server does not produce: pages, and a filter the registry ignored ----------------


async def test_api_pages_are_followed_and_an_ignored_filter_is_applied_here(httpx_mock: HTTPXMock) -> None:
    subject = Digest.of(b"subject")
    entries = [
        Descriptor(mt.OCI_MANIFEST, Digest.of(bytes([i])), 100 + i, artifact_type=t).to_json()
        for i, t in enumerate([SIGNATURE, SBOM, SIGNATURE])
    ]
    base = "http://registry.test:5000"
    first = f"{base}/v2/app/referrers/{subject}?artifactType={SIGNATURE.replace('/', '%2F')}"
    httpx_mock.add_response(url=f"{base}/v2/", headers={v2.API_VERSION_HEADER: v2.API_VERSION})
    httpx_mock.add_response(
        url=first,
        json={"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries[:2]},
        headers={"Link": f'</v2/app/referrers/{subject}?page=2>; rel="next"'},
    )
    httpx_mock.add_response(
        url=f"{base}/v2/app/referrers/{subject}?page=2",
        json={"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries[2:]},
    )
    httpx_mock.add_response(url=f"{base}/v2/app/tags/list", json={"name": "app", "tags": ["1.0"]})
    repo = Reference("registry.test:5000", "app")
    async with Client(plain_http=True, use_docker_config=False, retries=0) as client:
        found = await find_referrers(client.api, repo, subject, artifact_types=[SIGNATURE], recursive=False)
    assert [str(r.digest) for r in found] == [entries[0]["digest"], entries[2]["digest"]]
    assert [r.descriptor.size for r in found] == [100, 102]


async def test_copy_with_referrers_carries_them_to_distribution(
    serve_pair: tuple[RunningServe, ...],
    distribution: Distribution,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = serve_pair[0]
    attached = attach(server.url, "team/app", tag_schema=False)
    plain = regtool("copy", "--json", f"{server.host}/team/app:1.0", f"{distribution.host}/plain/app:1.0", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "referrers" not in json.loads(plain.stdout)
    done = regtool(
        "copy",
        "--json",
        "--referrers",
        f"{server.host}/team/app:1.0",
        f"{distribution.host}/mirror/app:1.0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["referrers"] == 4
    async with Client() as client:
        none = await find_referrers(client.api, Reference(distribution.host, "plain/app"), attached.subject)
        found = await find_referrers(client.api, Reference(distribution.host, "mirror/app"), attached.subject)
    assert none == []
    assert {r.digest for r in found} == {attached.signature, attached.sbom, attached.sbom_signature, attached.cosign}
    refused = regtool("copy", "--referrers", "--to-protocol", "v1", "127.0.0.1:1/a:1", "127.0.0.1:2/b:1", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--referrers needs registry v2 at both ends" in refused.stderr


def _tag_schema_entries(url: str, name: str, subject: Digest) -> dict[str, str | None]:
    """The entries of ``subject``'s tag-schema index at ``url``: digest -> artifactType ({} when absent)."""
    response = httpx.get(
        f"{url}/v2/{name}/manifests/{schema_tag(subject)}", headers={"Accept": mt.OCI_INDEX}, timeout=30
    )
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {entry["digest"]: entry.get("artifactType") for entry in response.json()["manifests"]}


async def test_a_referrer_copied_on_its_own_enters_its_subjects_tag_schema(
    serve_pair: tuple[RunningServe, ...],
    distribution: Distribution,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The spec makes the client that pushes a manifest with a subject, to a registry without the referrers
    # API, add it to the subject's tag-schema index: a copy of the signature alone must, as a copy with
    # --referrers does.
    server = serve_pair[0]
    attached = attach(server.url, "team/app", tag_schema=False)
    for reference in ("1.0", f"sha256:{attached.signature.encoded}"):
        separator = ":" if reference == "1.0" else "@"
        done = regtool(
            "copy",
            "-q",
            f"{server.host}/team/app{separator}{reference}",
            f"{distribution.host}/team/app{separator}{reference}",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    entries = _tag_schema_entries(distribution.url, "team/app", attached.subject)
    assert entries == {str(attached.signature): SIGNATURE}


async def test_deleting_a_referrer_drops_it_from_its_subjects_tag_schema(
    distribution: Distribution,  # noqa: F811
    tmp_path: Path,
) -> None:
    attached = attach(distribution.url, "team/app", tag_schema=True)
    done = regtool("delete", f"{distribution.host}/team/app@{attached.signature}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entries = _tag_schema_entries(distribution.url, "team/app", attached.subject)
    assert entries == {str(attached.sbom): SBOM}


async def test_copy_with_referrers_passes_over_a_stale_tag_schema_entry(
    serve_pair: tuple[RunningServe, ...],
    distribution: Distribution,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Another tool deleted the signature and left its entry in the index (distribution checks no entries).
    attached = attach(distribution.url, "team/app", tag_schema=True)
    gone = httpx.delete(f"{distribution.url}/v2/team/app/manifests/{attached.signature}", timeout=30)
    assert gone.status_code == 202
    target = serve_pair[1]
    done = regtool(
        "copy",
        "--json",
        "--referrers",
        f"{distribution.host}/team/app:1.0",
        f"{target.host}/team/app:1.0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["referrers"] == 3
    async with Client() as client:
        found = await find_referrers(client.api, Reference(target.host, "team/app"), attached.subject)
    assert {r.digest for r in found} == {attached.sbom, attached.sbom_signature, attached.cosign}


async def test_tags_naming_one_digest_carry_its_referrers_once(
    distribution: Distribution,  # noqa: F811
    serve_pair: tuple[RunningServe, ...],
    tmp_path: Path,
) -> None:
    # Three tags of one signed image: each referrer is written to the target once and counted once (copied once
    # per tag at once, the tag-schema index was written concurrently, and the run could fail).
    attached = attach(distribution.url, "team/app", tag_schema=True)
    with httpx.Client(base_url=distribution.url, timeout=30) as client:
        for tag in ("1.1", "2.0"):
            raw, kind = attached.image.manifest.raw, attached.image.manifest.media_type
            assert push_manifest(client, "team/app", tag, raw, kind).status_code == 201
    target = serve_pair[1]
    done = regtool("sync", "--json", f"{distribution.host}/team/app", target.host, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["referrers"] == 4
    written = [e for e in target.requests.events("PUT") if "/manifests/" in e.path]
    digests = [e.path.rsplit("/", 1)[1] for e in written]
    for referrer in (attached.signature, attached.sbom, attached.sbom_signature):
        assert digests.count(str(referrer)) == 1, referrer
