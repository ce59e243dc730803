"""registries.conf.d drop-ins (containers-registries.conf.d(5)): which directories, in which order, what overrides.

The unit tests point the system paths at a temporary tree; the interop test gives skopeo (containers/image, whose
rules these are) and regtool the same files under one $HOME and checks that both pull from the mirror a drop-in
names, against a real ``regtool serve``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from regtool.client import Client, mirrors
from regtool.client.mirrors import Endpoint, drop_in_directories, drop_in_files, load_registries_conf
from regtool.errors import UsageError
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.support.distribution import free_port
from tests.support.images import write_image
from tests.support.serve import run_serve


def names(endpoints: tuple[Endpoint, ...]) -> list[str]:
    return [str(e.ref) for e in endpoints]


def entry(prefix: str, *mirror_locations: str, blocked: bool = False) -> str:
    text = f'[[registry]]\nprefix = "{prefix}"\nlocation = "{prefix}"\n'
    if blocked:
        text += "blocked = true\n"
    for location in mirror_locations:
        text += f'[[registry.mirror]]\nlocation = "{location}"\n'
    return text + "\n"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """System paths under ``tmp_path/etc``, the user's under ``tmp_path/xdg``; nothing written yet."""
    monkeypatch.setattr(mirrors, "SYSTEM_REGISTRIES_CONF", tmp_path / "etc" / "registries.conf")
    monkeypatch.setattr(mirrors, "SYSTEM_REGISTRIES_CONF_D", tmp_path / "etc" / "registries.conf.d")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_system_file_then_system_drop_ins_then_user_drop_ins_in_name_order(tree: Path) -> None:
    write(tree / "etc" / "registries.conf", entry("a.local", "from-main.local") + entry("b.local", "b-main.local"))
    write(tree / "etc" / "registries.conf.d" / "20-a.conf", entry("a.local", "from-system-20.local"))
    write(tree / "etc" / "registries.conf.d" / "10-a.conf", entry("a.local", "from-system-10.local"))
    write(tree / "xdg" / "containers" / "registries.conf.d" / "00-a.conf", entry("a.local", "from-user.local"))
    write(tree / "xdg" / "containers" / "registries.conf.d" / "01-c.conf", entry("c.local", "c-user.local"))
    conf = load_registries_conf()
    # The user's directory comes last, whatever its files are called: its entry for a.local wins, whole.
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["from-user.local/x:1", "a.local/x:1"]
    # Entries no drop-in names stay as the main file has them; new prefixes are added.
    assert names(conf.pull_endpoints(Reference.parse("b.local/x:1"))) == ["b-main.local/x:1", "b.local/x:1"]
    assert names(conf.pull_endpoints(Reference.parse("c.local/x:1"))) == ["c-user.local/x:1", "c.local/x:1"]


def test_a_later_drop_in_replaces_an_entry_with_its_mirrors(tree: Path) -> None:
    write(tree / "etc" / "registries.conf", entry("a.local", "one.local", "two.local"))
    write(tree / "etc" / "registries.conf.d" / "a.conf", entry("a.local"))
    conf = load_registries_conf()
    # No mirror left: the drop-in's table replaced the main file's, it did not add to it.
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["a.local/x:1"]


def test_the_users_registries_conf_brings_only_the_users_drop_ins(tree: Path) -> None:
    write(tree / "etc" / "registries.conf.d" / "a.conf", entry("a.local", blocked=True))
    user = write(tree / "xdg" / "containers" / "registries.conf", entry("a.local", "user.local"))
    write(tree / "xdg" / "containers" / "registries.conf.d" / "b.conf", entry("b.local", "b-user.local"))
    assert drop_in_directories(user) == (tree / "xdg" / "containers" / "registries.conf.d",)
    conf = load_registries_conf()
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["user.local/x:1", "a.local/x:1"]
    assert names(conf.pull_endpoints(Reference.parse("b.local/x:1"))) == ["b-user.local/x:1", "b.local/x:1"]


def test_an_explicit_file_brings_the_system_and_user_drop_ins_and_no_file_d(tree: Path) -> None:
    explicit = write(tree / "mine" / "registries.conf", entry("a.local", "mine.local"))
    write(tree / "mine" / "registries.conf.d" / "a.conf", entry("a.local", blocked=True))
    write(tree / "etc" / "registries.conf.d" / "b.conf", entry("b.local", "b-system.local"))
    write(tree / "xdg" / "containers" / "registries.conf.d" / "c.conf", entry("c.local", "c-user.local"))
    # Even when the explicit file is the user's own: naming it is what counts, as in containers/image.
    user = write(tree / "xdg" / "containers" / "registries.conf", "")
    assert drop_in_directories(user, explicit=True) == (
        tree / "etc" / "registries.conf.d",
        tree / "xdg" / "containers" / "registries.conf.d",
    )
    conf = load_registries_conf(explicit)
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["mine.local/x:1", "a.local/x:1"]
    assert names(conf.pull_endpoints(Reference.parse("b.local/x:1"))) == ["b-system.local/x:1", "b.local/x:1"]
    assert names(conf.pull_endpoints(Reference.parse("c.local/x:1"))) == ["c-user.local/x:1", "c.local/x:1"]


def test_without_any_main_file_the_drop_ins_alone_apply(tree: Path) -> None:
    write(tree / "etc" / "registries.conf.d" / "a.conf", entry("a.local", "m.local"))
    conf = load_registries_conf(mirrors=["http://run.local"])
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == [
        "run.local/x:1",
        "m.local/x:1",
        "a.local/x:1",
    ]


def test_missing_directories_are_no_error_and_only_conf_files_count(tree: Path) -> None:
    assert drop_in_files(drop_in_directories(None)) == []
    directory = tree / "etc" / "registries.conf.d"
    write(directory / "a.conf", entry("a.local", "m.local"))
    write(directory / "a.conf.rpmsave", "not toml at all [[[")
    write(directory / "README", "not toml at all [[[")
    write(directory / "nested" / "b.conf", "not toml at all [[[")
    (directory / "dir.conf").mkdir()
    assert drop_in_files([directory, tree / "absent"]) == [directory / "a.conf"]
    conf = load_registries_conf()
    assert names(conf.pull_endpoints(Reference.parse("a.local/x:1"))) == ["m.local/x:1", "a.local/x:1"]


def test_a_block_from_a_drop_in_names_the_drop_in(tree: Path) -> None:
    write(tree / "etc" / "registries.conf", entry("a.local", "m.local"))
    drop_in = write(tree / "etc" / "registries.conf.d" / "block.conf", entry("a.local/secret", blocked=True))
    conf = load_registries_conf()
    with pytest.raises(UsageError) as caught:
        conf.pull_endpoints(Reference.parse("a.local/secret:1"))
    why = f"is blocked by {drop_in} ([[registry]] prefix 'a.local/secret')"
    assert str(caught.value) == f"pulling a.local/secret:1 {why}"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[registries.search]\nregistries = ['a.local']\n", "is in the version 1 format"),
        ("[[registry]\n", "not valid TOML"),
        ('[[registry]]\nprefix = "a.local"\n', "location is unset"),
    ],
)
def test_a_bad_drop_in_is_refused_naming_it(tree: Path, text: str, message: str) -> None:
    write(tree / "etc" / "registries.conf", entry("a.local", "m.local"))
    bad = write(tree / "xdg" / "containers" / "registries.conf.d" / "bad.conf", text)
    with pytest.raises(UsageError, match=message) as caught:
        load_registries_conf()
    assert str(caught.value).startswith(str(bad))
    assert "\n" not in str(caught.value)


def test_the_cli_reads_a_drop_in_and_exits_2_on_a_bad_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    conf = write(tmp_path / "registries.conf", "")
    bad = write(home / ".config" / "containers" / "registries.conf.d" / "bad.conf", "[[registry]\n")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    result = regtool("inspect", "--registries-conf", str(conf), "127.0.0.1:9/app:1", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}: not valid TOML")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.interop
def test_skopeo_and_regtool_follow_the_same_drop_ins(tmp_path: Path) -> None:
    """The explicit file sends docker.io to a dead mirror; the user's drop-in replaces that with the live one;
    a ``FILE.d`` beside the explicit file blocks the image. Both tools pull from the live mirror: both read the
    user's drop-in over the file, and neither reads ``FILE.d``."""
    skopeo = require_binary("skopeo")
    image = write_image(tmp_path / "src", "1", [{"etc/motd": b"from a drop-in's mirror\n"}], docker=True)
    home = tmp_path / "home"
    with run_serve(tmp_path / "mirror") as mirror:

        async def push() -> None:
            async with Client(use_docker_config=False) as client:
                await client.push(f"{tmp_path / 'src'}:1", Reference.parse(f"{mirror.host}/library/app:1"))

        anyio.run(push)
        dead = f"127.0.0.1:{free_port()}"
        conf = write(
            tmp_path / "conf" / "registries.conf",
            f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
            f'[[registry.mirror]]\nlocation = "{dead}"\ninsecure = true\n',
        )
        write(tmp_path / "conf" / "registries.conf.d" / "block.conf", entry("docker.io/library/app", blocked=True))
        write(
            home / ".config" / "containers" / "registries.conf.d" / "50-mirror.conf",
            f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n',
        )
        env = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
        mirror.requests.clear()
        copied = subprocess.run(
            [skopeo, "--insecure-policy", "--registries-conf", str(conf), "copy", "docker://docker.io/library/app:1",
             f"dir:{tmp_path / 'by-skopeo'}"],
            capture_output=True, text=True, timeout=120, check=False, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert copied.returncode == 0, copied.stderr
        assert any(e.path == "/v2/library/app/manifests/1" for e in mirror.requests.events("GET"))
        mirror.requests.clear()
        dest = str(tmp_path / "by-regtool")
        pulled = regtool("pull", "--json", "--registries-conf", str(conf), "app:1", dest, cwd=tmp_path, env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert json.loads(pulled.stdout)["digest"] == str(image.manifest.digest)
        served = {e.path for e in mirror.requests.events("GET") if e.status == 200}
        assert "/v2/library/app/manifests/1" in served
        assert {f"/v2/library/app/blobs/{d}" for d in image.blobs} <= served
