"""``regtool sync`` with a directory at one end (one OCI layout per repository), ``--immutable-tags``, and a
trimmed index carried through a directory."""

from __future__ import annotations

from pathlib import Path

from regtool.image.oci_layout import OciLayout
from tests.cli.support import assert_user_error, in_process
from tests.support.images import write_image, write_index
from tests.support.serve import run_serve
from tests.sync.support import digest_at, kinds, tags_at


def test_a_trimmed_index_crosses_a_directory_with_its_new_digest(tmp_path: Path) -> None:
    write_index(tmp_path / "multi", "2.0", [("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")])
    carried = tmp_path / "carried"
    with run_serve(tmp_path / "a", enable_v1=False) as a, run_serve(tmp_path / "b", enable_v1=False) as b:
        assert in_process("push", f"{tmp_path / 'multi'}:2.0", f"{a.host}/team/multi:2.0").returncode == 0
        out = in_process("sync", f"{a.host}/team/multi", str(carried), "--platform", "linux/amd64,linux/s390x")
        assert out.returncode == 0, out.stderr
        layout = OciLayout.open(carried / "team/multi")
        trimmed = layout.resolve("2.0")
        index = layout.manifest(trimmed)
        assert [str(entry.platform) for entry in index.manifests] == ["linux/amd64", "linux/s390x"]
        assert f"becomes {trimmed.digest}" in out.stdout
        # Every manifest and blob the trimmed index needs is in the layout, and nothing of arm64.
        for entry in index.manifests:
            child = layout.manifest(entry.digest)
            assert all(layout.blobs.has(d.digest) for d in (child.config, *child.layers) if d is not None)
        assert not any("arm64" in str(e.platform) for e in index.manifests)

        back = in_process("sync", str(carried), b.host)
        assert back.returncode == 0, back.stderr
        assert digest_at(b.url, "team/multi", "2.0") == str(trimmed.digest)
        assert tags_at(b.url, "team/multi") == ["2.0"]
        again = in_process("sync", f"{a.host}/team/multi", str(carried), "--platform", "linux/amd64,linux/s390x")
        assert "1 image(s): 1 skipped" in again.stdout


def test_immutable_tags_skip_what_the_destination_has_without_asking_the_source(tmp_path: Path) -> None:
    write_image(tmp_path / "one", "1", [{"v.txt": b"one"}])
    write_image(tmp_path / "two", "1", [{"v.txt": b"two"}])
    with run_serve(tmp_path / "a", enable_v1=False) as a, run_serve(tmp_path / "b", enable_v1=False) as b:
        assert in_process("push", f"{tmp_path / 'one'}:1", f"{a.host}/team/app:1").returncode == 0
        assert in_process("sync", f"{a.host}/team/app", b.host).returncode == 0
        first = digest_at(b.url, "team/app", "1")
        # The tag moves at the source.
        assert in_process("push", f"{tmp_path / 'two'}:1", f"{a.host}/team/app:1").returncode == 0
        moved = digest_at(a.url, "team/app", "1")
        assert moved != first

        a.requests.clear()
        kept = in_process("sync", f"{a.host}/team/app", b.host, "--immutable-tags")
        assert kept.returncode == 0, kept.stderr
        assert "1 image(s): 1 skipped" in kept.stdout
        assert digest_at(b.url, "team/app", "1") == first
        assert kinds(a.requests.events())["HEAD manifests"] == 0

        followed = in_process("sync", f"{a.host}/team/app", b.host)
        assert followed.returncode == 0, followed.stderr
        assert digest_at(b.url, "team/app", "1") == moved


def test_a_directory_source_lists_its_layouts_and_a_directory_inside_itself_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "carried/team/app", "1.0", [{"a.txt": b"a"}])
    write_image(tmp_path / "carried/lib/base", "2.0", [{"b.txt": b"b"}])
    with run_serve(tmp_path / "b", enable_v1=False) as b:
        proc = in_process("sync", f"dir:{tmp_path / 'carried'}", f"{b.host}/m", "--repos", "team/.*")
        assert proc.returncode == 0, proc.stderr
        assert tags_at(b.url, "m/team/app") == ["1.0"]
        assert tags_at(b.url, "m/lib/base") == []
    for inside in (tmp_path / "carried", tmp_path / "carried/copy", tmp_path):
        refused = in_process("sync", str(tmp_path / "carried"), str(inside))
        assert_user_error(refused, 2, "one directory is inside the other")
    assert not (tmp_path / "carried/copy").exists()
    missing = in_process("sync", str(tmp_path / "absent"), "127.0.0.1:1/x")
    assert_user_error(missing, 2, "no such directory")


def test_prune_into_a_directory_drops_the_ref_and_keeps_the_rest(tmp_path: Path) -> None:
    write_image(tmp_path / "src", "1.0", [{"a.txt": b"a"}])
    write_image(tmp_path / "src", "2.0", [{"b.txt": b"b"}])
    carried = tmp_path / "carried"
    with run_serve(tmp_path / "a", enable_v1=False) as a:
        for tag in ("1.0", "2.0"):
            assert in_process("push", f"{tmp_path / 'src'}:{tag}", f"{a.host}/team/app:{tag}").returncode == 0
        assert in_process("sync", f"{a.host}/team/app", str(carried)).returncode == 0
        layout = OciLayout.open(carried / "team/app")
        # A tag the source never had: as if it had been deleted there since the last sync.
        layout.add_manifest(layout.resolve("2.0"), ref_name="old")
        dry = in_process("sync", f"{a.host}/team/app", str(carried), "--prune", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert [line.split()[3] for line in dry.stdout.splitlines() if line.startswith("would-prune")] == [
            f"{carried / 'team/app'}:old"
        ]
        assert sorted(layout.ref_names()) == ["1.0", "2.0", "old"]
        pruned = in_process("sync", f"{a.host}/team/app", str(carried), "--prune")
        assert pruned.returncode == 0, pruned.stderr
    assert sorted(layout.ref_names()) == ["1.0", "2.0"]
    # The image of 2.0 (which "old" named too) is whole: a ref goes, its blobs stay.
    manifest = layout.manifest(layout.resolve("2.0"))
    assert all(layout.blobs.has(d.digest) for d in (manifest.config, *manifest.layers) if d is not None)
