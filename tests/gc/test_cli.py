"""``regtool serve gc``'s refusals: one line naming what is wrong, exit 2, nothing touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import assert_user_error, in_process


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("serve", "gc", "--root", "{tmp}/missing"), "no registry storage at"),
        (("serve", "--root", "{tmp}", "gc"), "--root before 'gc' would be the server's options"),
        (("serve", "gc", "--storage", "inmemory"), "--storage must be filesystem or s3"),
        (("serve", "gc", "--storage", "s3"), "--storage s3 needs --s3-bucket, or --config FILE"),
        (("serve", "gc", "--s3-bucket", "b"), "the --s3-* options are for --storage s3"),
        (("serve", "gc", "--storage", "s3", "--s3-bucket", "b", "--root", "{tmp}"), "--root is for filesystem"),
        (("serve", "gc", "--root", "{tmp}", "--delay", "soon"), "invalid --delay 'soon'"),
        (("serve", "gc", "--config", "{tmp}/inmemory.yml"), "names inmemory storage"),
        (("serve", "gc", "--config", "{tmp}/nope.yml"), "cannot read configuration file"),
        (("serve", "--root", "{tmp}", "--gc-interval", "0"), "--gc-interval must be longer than 0, not '0'"),
        (("serve", "--root", "{tmp}", "--gc-interval", "1h", "--gc-delay", "-1"), "invalid --gc-delay '-1'"),
    ],
)
def test_refusals(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    (tmp_path / "inmemory.yml").write_text("version: 0.1\nstorage:\n  inmemory: {}\n")
    done = in_process(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert_user_error(done, 2, fragment)
    assert not (tmp_path / "missing").exists()


def test_an_empty_store_has_nothing_to_remove(tmp_path: Path) -> None:
    done = in_process("serve", "gc", "--root", str(tmp_path), "--delay", "0")
    assert (done.returncode, done.stdout) == (0, "nothing to remove\n")
