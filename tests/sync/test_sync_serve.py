"""``regtool sync`` between real ``regtool serve`` instances: 3 repositories x 10 tags (one a multi-platform
index), filters, platform trimming, a no-op re-run counted at both servers, prune, skopeo sync files,
--keep-going past an unreachable registry, and an interrupted sync that the next run completes."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.digest import Digest
from tests.cli.support import assert_user_error, in_process, start_regtool
from tests.support.distribution import free_port
from tests.support.serve import RunningServe, run_serve
from tests.sync.seed import INDEX_TAG, REPOSITORIES, TAGS, seed
from tests.sync.support import digest_at, kinds, tags_at
from tests.sync.test_referrers import SBOM, attach


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServe, dict[str, Digest]]]:
    """A serve holding every seeded image (read only: tests that change a source seed their own)."""
    root = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGTOOL_STATE_DIR", str(root / "state"))
        patch.setenv("DOCKER_CONFIG", str(root / "docker-config"))
        with run_serve(root / "registry", enable_v1=False) as server:
            pushed = seed(server.host, root / "work")
            yield server, pushed


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "dest", enable_v1=False) as server:
        yield server


def lines(stdout: str, status: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"{status} ")]


def test_a_whole_registry_is_mirrored_and_a_rerun_asks_one_head_per_tag_at_each_end(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe
) -> None:
    server, pushed = source
    first = in_process("sync", server.host, f"{dest.host}/mirror")
    assert first.returncode == 0, first.stderr
    assert len(lines(first.stdout, "copied")) + len(lines(first.stdout, "mounted")) == 30
    for repository in REPOSITORIES:
        assert tags_at(dest.url, f"mirror/{repository}") == sorted(TAGS)
        for tag in TAGS:
            assert digest_at(dest.url, f"mirror/{repository}", tag) == str(pushed[f"{repository}:{tag}"])
    # Blobs one repository received were mounted into the next, not sent again.
    assert any("mounted" in line for line in first.stdout.splitlines())
    # A blob the images of a repository share is asked about (or sent) once in the run, not once per image.
    blob_heads = Counter(e.path for e in dest.requests.events() if e.method == "HEAD" and "/blobs/" in e.path)
    assert blob_heads and max(blob_heads.values()) == 1, blob_heads.most_common(3)

    server.requests.clear()
    dest.requests.clear()
    again = in_process("sync", server.host, f"{dest.host}/mirror")
    assert again.returncode == 0, again.stderr
    assert len(lines(again.stdout, "skipped")) == 30
    assert "30 image(s): 30 skipped" in again.stdout
    at_source, at_dest = kinds(server.requests.events()), kinds(dest.requests.events())
    # The catalog and one tag list per repository, then one HEAD per tag: no manifest GET, no blob, no write.
    assert at_source == {"GET ping": at_source["GET ping"], "GET _catalog": 1, "GET tags": 3, "HEAD manifests": 30}
    assert at_dest == {"GET ping": at_dest["GET ping"], "HEAD manifests": 30}
    assert at_source["GET ping"] <= 2 and at_dest["GET ping"] <= 2


def test_tag_filters_choose_what_is_copied(source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe) -> None:
    server, _ = source
    proc = in_process("sync", f"{server.host}/team/app", dest.host, "--tags", r"[12]\..*", "--exclude", r"1\.2\..*")
    assert proc.returncode == 0, proc.stderr
    assert tags_at(dest.url, "team/app") == ["1.0.0", "1.1.0", "2.0.0", "2.1.0"]

    proc = in_process("sync", f"{server.host}/team/web", dest.host, "--semver", ">=1.2 <3")
    assert proc.returncode == 0, proc.stderr
    # The release candidate of 3.0.0 is outside, as are tags that are no versions.
    assert tags_at(dest.url, "team/web") == ["1.2.0", "1.2.1", "2.0.0", "2.1.0"]

    proc = in_process("sync", server.host, f"{dest.host}/only", "--repos", "team/.*", "--tags", "latest")
    assert proc.returncode == 0, proc.stderr
    assert [tags_at(dest.url, f"only/{r}") for r in REPOSITORIES] == [["latest"], ["latest"], []]

    proc = in_process("sync", f"{server.host}/lib/base:dev", f"{dest.host}/one")
    assert proc.returncode == 0, proc.stderr
    assert tags_at(dest.url, "one/lib/base") == ["dev"]


def test_a_platform_subset_is_a_trimmed_index_whose_new_digest_is_reported(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe
) -> None:
    server, pushed = source
    original = str(pushed[f"team/app:{INDEX_TAG}"])
    refused = in_process(
        "sync", f"{server.host}/team/app:{INDEX_TAG}", dest.host, "--platform", "linux/arm64", "--preserve-digests"
    )
    assert_user_error(refused, 2, "--preserve-digests", original)
    assert tags_at(dest.url, "team/app") == []

    proc = in_process("sync", f"{server.host}/team/app:{INDEX_TAG}", dest.host, "--platform", "linux/arm64")
    assert proc.returncode == 0, proc.stderr
    trimmed = digest_at(dest.url, "team/app", INDEX_TAG)
    assert trimmed is not None and trimmed != original
    (line,) = lines(proc.stdout, "copied")
    assert f"platforms trimmed: digest {original} becomes {trimmed}" in line
    index = httpx.get(
        f"{dest.url}/v2/team/app/manifests/{INDEX_TAG}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
    ).json()
    assert [entry["platform"]["architecture"] for entry in index["manifests"]] == ["arm64"]
    child = index["manifests"][0]["digest"]
    assert digest_at(dest.url, "team/app", child) == child

    again = in_process("sync", f"{server.host}/team/app:{INDEX_TAG}", dest.host, "--platform", "linux/arm64")
    assert again.returncode == 0, again.stderr
    assert len(lines(again.stdout, "skipped")) == 1

    # An image (not an index) has nothing to trim: its digest is kept, and so --preserve-digests lets it through.
    plain = in_process(
        "sync", f"{server.host}/team/app:dev", dest.host, "--platform", "linux/arm64", "--preserve-digests"
    )
    assert plain.returncode == 0, plain.stderr
    assert digest_at(dest.url, "team/app", "dev") == str(pushed["team/app:dev"])


def test_prune_deletes_the_tags_the_source_no_longer_has_after_a_dry_run_showed_them(
    source: tuple[RunningServe, dict[str, Digest]], tmp_path: Path
) -> None:
    server, pushed = source
    with run_serve(tmp_path / "dest", enable_v1=False, delete_enabled=True) as dest:
        assert in_process("sync", f"{server.host}/team/app", dest.host, "--tags", "1.*").returncode == 0
        # Tags only the destination has: an old image the filter takes (pruned), one it leaves out (someone
        # else's: kept), and a tag-schema index (a referrers fallback: kept).
        raw = httpx.get(f"{dest.url}/v2/team/app/manifests/1.0.0", headers={"Accept": "*/*"})
        for tag in ("1.9-old", "local", "sha256-" + "a" * 64):
            put = httpx.put(
                f"{dest.url}/v2/team/app/manifests/{tag}",
                content=raw.content,
                headers={"Content-Type": raw.headers["Content-Type"]},
            )
            assert put.status_code == 201
        before = tags_at(dest.url, "team/app")

        dry = in_process("sync", f"{server.host}/team/app", dest.host, "--tags", "1.*", "--prune", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert [line.split()[1] for line in lines(dry.stdout, "would-prune")] == [f"{server.host}/team/app:1.9-old"]
        assert tags_at(dest.url, "team/app") == before

        dest.requests.clear()
        pruned = in_process("sync", f"{server.host}/team/app", dest.host, "--tags", "1.*", "--prune")
        assert pruned.returncode == 0, pruned.stderr
        assert [line.split()[1] for line in lines(pruned.stdout, "pruned")] == [f"{server.host}/team/app:1.9-old"]
        assert tags_at(dest.url, "team/app") == sorted(set(before) - {"1.9-old"})
        assert digest_at(dest.url, "team/app", "1.0.0") == str(pushed["team/app:1.0.0"])
        assert [e.path for e in dest.requests.events() if e.method == "DELETE"] == ["/v2/team/app/manifests/1.9-old"]


SKOPEO_FILE = """\
{host}:
  images:
    team/app: ["1.0.0", "dev"]
  images-by-tag-regex:
    team/web: ^2\\.
  images-by-semver:
    lib/base: "~1.2"
  tls-verify: false
  cert-dir: /nonexistent/certs
"""


def test_a_skopeo_sync_file_is_taken_as_is(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe, tmp_path: Path
) -> None:
    server, pushed = source
    config = tmp_path / "sync.yaml"
    config.write_text(SKOPEO_FILE.format(host=server.host))
    proc = in_process("sync", "--config", str(config), f"{dest.host}/mirror")
    assert proc.returncode == 0, proc.stderr
    assert tags_at(dest.url, "mirror/team/app") == ["1.0.0", "dev"]
    assert tags_at(dest.url, "mirror/team/web") == ["2.0.0", "2.1.0"]
    assert tags_at(dest.url, "mirror/lib/base") == ["1.2.0", "1.2.1"]
    assert digest_at(dest.url, "mirror/team/web", "2.1.0") == str(pushed["team/web:2.1.0"])
    assert "cert-dir is not honoured" in proc.stderr
    assert f"tls-verify: false: TLS certificates of {server.host} are not verified" in proc.stderr
    assert "--insecure" not in proc.stderr  # the other registry is verified as ever


def test_command_line_filters_narrow_a_skopeo_sync_file(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe, tmp_path: Path
) -> None:
    server, _ = source
    config = tmp_path / "sync.yaml"
    config.write_text(SKOPEO_FILE.format(host=server.host))
    proc = in_process("sync", "--config", str(config), dest.host, "--exclude", "dev|2\\.0\\.0", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    chosen = sorted(r["source"].removeprefix(f"{server.host}/") for r in json.loads(proc.stdout)["results"])
    assert chosen == ["lib/base:1.2.0", "lib/base:1.2.1", "team/app:1.0.0", "team/web:2.1.0"]
    refused = in_process("sync", "--config", str(config), dest.host, "--repos", "team/.*")
    assert_user_error(refused, 2, "--repos", "a sync file names its own")


def test_a_skopeo_sync_file_with_an_unknown_key_is_refused_before_anything_moves(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe, tmp_path: Path
) -> None:
    server, _ = source
    config = tmp_path / "sync.yaml"
    config.write_text(SKOPEO_FILE.format(host=server.host) + "  images-by-digest: {}\n")
    server.requests.clear()
    proc = in_process("sync", "--config", str(config), f"{dest.host}/mirror")
    assert_user_error(proc, 2, str(config), "unknown key 'images-by-digest'")
    assert server.requests.events() == [] and tags_at(dest.url, "mirror/team/app") == []


def test_keep_going_copies_the_rest_and_names_the_unreachable_source(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe, tmp_path: Path
) -> None:
    server, _ = source
    closed = f"127.0.0.1:{free_port()}"
    config = tmp_path / "sync.yaml"
    config.write_text(
        f"{server.host}:\n  images:\n    team/app: ['1.0.0', '1.1.0']\n{closed}:\n  images:\n    team/gone: ['1.0']\n"
    )
    stopped = in_process("sync", "--config", str(config), dest.host, "--retries", "0", "-j", "1")
    assert stopped.returncode == 6

    proc = in_process("sync", "--config", str(config), dest.host, "--retries", "0", "--keep-going")
    message = assert_user_error(proc, 6, "1 of 3 failed", f"{closed}/team/gone:1.0")
    assert "team/app" not in message
    assert tags_at(dest.url, "team/app") == ["1.0.0", "1.1.0"]
    (failed,) = lines(proc.stdout, "failed")
    assert f"{closed}/team/gone:1.0" in failed


def test_json_dry_run_lists_what_would_be_copied_and_writes_nothing(
    source: tuple[RunningServe, dict[str, Digest]], dest: RunningServe
) -> None:
    server, pushed = source
    proc = in_process("sync", f"{server.host}/lib/base", dest.host, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["would_copy"], summary["copied"], summary["dry_run"]) == (10, 0, True)
    assert {r["source"]: r["digest"] for r in summary["results"]} == {
        f"{server.host}/lib/base:{tag}": str(pushed[f"lib/base:{tag}"]) for tag in TAGS
    }
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert sum(1 for e in events if e["event"] == "sync") == 10
    assert not [e for e in dest.requests.events() if e.method not in {"GET", "HEAD"}]


def test_an_interrupted_sync_completes_on_the_next_run(
    source: tuple[RunningServe, dict[str, Digest]], tmp_path: Path
) -> None:
    server, pushed = source
    with run_serve(tmp_path / "slow", enable_v1=False, latency_ms=40) as dest:
        proc = start_regtool("sync", f"{server.host}/team/app", dest.host, "-j", "1", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while len(tags_at(dest.url, "team/app")) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        done = tags_at(dest.url, "team/app")
        assert 3 <= len(done) < len(TAGS)

        rerun = in_process("sync", f"{server.host}/team/app", dest.host)
        assert rerun.returncode == 0, rerun.stderr
        assert {line.split()[1] for line in lines(rerun.stdout, "skipped")} >= {
            f"{server.host}/team/app:{t}" for t in done
        }
        for tag in TAGS:
            assert digest_at(dest.url, "team/app", tag) == str(pushed[f"team/app:{tag}"])


def test_artifact_type_chooses_which_referrers_follow(tmp_path: Path) -> None:
    with run_serve(tmp_path / "a", enable_v1=False) as a, run_serve(tmp_path / "b", enable_v1=False) as b:
        attached = attach(a.url, "team/signed", tag_schema=False)
        proc = in_process("sync", f"{a.host}/team/signed", b.host, "--artifact-type", SBOM, "--json")
        assert proc.returncode == 0, proc.stderr
        (result,) = json.loads(proc.stdout)["results"]
        assert (result["status"], result["referrers"]) == ("copied", 1)
        assert digest_at(b.url, "team/signed", str(attached.sbom)) == str(attached.sbom)
        # The SBOM's signature is of another type, and so are the image's signature and cosign's tag.
        for left in (attached.signature, attached.sbom_signature, attached.cosign):
            assert digest_at(b.url, "team/signed", str(left)) is None
        listed = httpx.get(f"{b.url}/v2/team/signed/referrers/{attached.subject}").json()
        assert [entry["digest"] for entry in listed["manifests"]] == [str(attached.sbom)]
