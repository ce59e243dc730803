"""The start-up pre-connect (``regtool/cli/preconnect.py``): which command lines open a registry's connections
while the command imports, to which host and port, and that a real run through ``main`` uses them.

The argv reading is checked over every registry command's shape, and its table of options against the commands'
own (click's), so a new option cannot make it misread a command line; the thread against real listeners; the whole
path with ``python -m regtool`` against the real serve behind a relay that counts connections.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from regtool.cli import _REGISTRY_COMMANDS, _register_every_command, app, preconnect
from regtool.cli.preconnect import COMMAND_SHAPES, EarlyConnect, Target, early_connect_for
from regtool.client.net import parking
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.support.connrelay import run_connection_relay
from tests.support.images import write_image
from tests.support.serve import RunningServe, serve  # noqa: F401  (the fixture)

NO_ENV: dict[str, str] = {}


def _registries(argv: list[str], environ: dict[str, str] | None = None) -> list[str] | None:
    plan = early_connect_for(argv, NO_ENV if environ is None else environ)
    return None if plan is None else [target.registry for target in plan.targets]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # pull IMAGE [DEST]
        (["pull", "reg.example:5000/team/app:1", "out"], ["reg.example:5000"]),
        (["pull", "-q", "--jobs", "4", "reg.example/team/app@sha256:" + "a" * 64], ["reg.example"]),
        (["pull", "busybox", "-", "--format=docker-archive"], ["docker.io"]),
        (
            ["pull", "-vv", "--platform", "linux/arm64", "--all-platforms", "127.0.0.1:5000/a:1", "d"],
            ["127.0.0.1:5000"],
        ),
        (["pull", "-j", "2", "--v1-jobs", "3", "--protocol", "v1", "localhost:5000/a"], ["localhost:5000"]),
        (["pull"], None),  # missing IMAGE: the command says so
        (["pull", "a", "b", "c"], None),  # one too many
        (["pull", "--help"], None),
        (["pull", "reg.example/a", "--bogus"], None),
        (["pull", "-qv", "reg.example/a"], None),  # combined short flags: not read here
        (["pull", "-j8", "reg.example/a"], None),  # a value stuck to a short option
        (["pull", "--", "reg.example/a"], None),
        (["pull", "reg.example/a", "--jobs"], None),  # the value is missing
        (["pull", "Reg.Example/UPPER"], None),  # not a reference
        # inspect IMAGE, tags REPOSITORY, delete IMAGE
        (["inspect", "--raw", "--json", "reg.example/a:1"], ["reg.example"]),
        (["inspect", "reg.example/a:1", "extra"], None),
        (["tags", "reg.example:443/team/app", "--protocol", "v2"], ["reg.example:443"]),
        (["tags", "reg.example/team/app:1"], None),  # tags takes no tag
        (["delete", "-u", "ci", "--password-stdin", "reg.example/a@sha256:" + "b" * 64], ["reg.example"]),
        # copy SOURCE TARGET, push SOURCE IMAGE
        (["copy", "a.example/x:1", "b.example:5000/y:1", "--mount-from", "z"], ["a.example", "b.example:5000"]),
        (["copy", "--src-username", "u", "--src-password-stdin", "a.example/x:1"], None),
        (["push", "./layout:1", "reg.example/team/app:1", "--chunk-size", "16MiB"], ["reg.example"]),
        (["push", "image.tar", "-", "--json"], None),  # "-" is not a registry
        # catalog, probe, login: REGISTRY
        (["catalog", "reg.example:5000"], ["reg.example:5000"]),
        (["catalog", "reg.example:5000/team"], None),  # a registry takes no path
        (["probe", "--plain-http", "docker://reg.example"], ["reg.example"]),
        (["login", "-u", "ci", "--password-stdin", "reg.example"], ["reg.example"]),
        (["login", "-u", "ci", "reg.example"], None),  # a password prompt first
        # never
        (["logout", "reg.example"], None),
        (["sync", "reg.example/team/app", "localhost:5000/mirror"], None),
        (["serve", "--port", "5000"], None),
        (["demo"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_which_registries_a_command_line_names(argv: list[str], expected: list[str] | None) -> None:
    assert _registries(argv) == expected


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["login", "-u", "ci", "reg.example"], {"REGTOOL_PASSWORD": "x"}, ["reg.example"]),
        (["login", "reg.example"], {"REGTOOL_USERNAME": "ci", "REGTOOL_PASSWORD": "x"}, ["reg.example"]),
        (["pull", "reg.example/a"], {"REGTOOL_USERNAME": "ci", "REGTOOL_PASSWORD": "x"}, ["reg.example"]),
        (["pull", "-u", "ci", "reg.example/a"], {}, None),  # no password: a usage error before any connection
        (["pull", "reg.example/a"], {"REGTOOL_USERNAME": "ci"}, None),
        (["pull", "reg.example/a"], {"REGTOOL_PASSWORD": "x"}, None),  # a password without a username
        (
            ["copy", "--src-username", "u", "a.example/x", "b.example/y"],
            {"REGTOOL_SRC_PASSWORD": "x"},
            ["a.example", "b.example"],
        ),
        (["copy", "--dest-username", "u", "a.example/x", "b.example/y"], {}, None),
        (["copy", "--dest-password-stdin", "a.example/x", "b.example/y"], {}, None),
        (
            [
                "copy",
                "-u",
                "u",
                "--password-stdin",
                "--src-username",
                "v",
                "--src-password-stdin",
                "a.example/x",
                "b.example/y",
            ],
            {},
            None,
        ),
    ],
)
def test_credentials_the_command_would_refuse_mean_no_pre_connect(
    argv: list[str], environ: dict[str, str], expected: list[str] | None
) -> None:
    assert _registries(argv, environ) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["pull", "--jobs", "0", "reg.example/a"],
        ["pull", "-j", "65", "reg.example/a"],
        ["pull", "--jobs", "many", "reg.example/a"],
        ["pull", "--v1-jobs=0", "reg.example/a"],
        ["tags", "--retries", "101", "reg.example/a"],
        ["pull", "--format", "tarball", "reg.example/a"],
        ["copy", "--to-protocol", "v3", "a.example/x", "b.example/y"],
        ["inspect", "--timeout", "-1", "reg.example/a"],
        ["inspect", "--connect-timeout", "nan", "reg.example/a"],
        ["probe", "--ca-cert", "/nonexistent/ca.pem", "reg.example"],
    ],
)
def test_a_value_the_command_would_refuse_means_no_pre_connect(argv: list[str]) -> None:
    assert _registries(argv) is None


def test_accepted_values_still_pre_connect(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    argv = ["pull", "-j", "64", "--retries", "0", "--format", "OCI", "--protocol", "V2", "--ca-cert", str(ca)]
    assert _registries([*argv, "--timeout", "0.5", "reg.example/a"]) == ["reg.example"]


def test_the_connection_options_are_read() -> None:
    plan = early_connect_for(
        ["pull", "--insecure", "--connect-timeout", "2.5", "--mirror", "http://m.example", "reg.example/a:1"], NO_ENV
    )
    assert plan == EarlyConnect(
        (Target("reg.example", Reference.parse("reg.example/a:1")),),
        insecure=True,
        connect_timeout=2.5,
        mirrors=("http://m.example",),
    )
    assert early_connect_for(["inspect", "--connect-timeout", "0", "reg.example/a"], NO_ENV) is None


def test_the_table_knows_every_option_of_every_registry_command() -> None:
    """Each shape lists exactly the command's options (flags apart from those taking a value) and its arguments."""
    _register_every_command()
    group = typer.main.get_command(app)
    assert set(COMMAND_SHAPES) == _REGISTRY_COMMANDS - {"sync"}
    for name, shape in COMMAND_SHAPES.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        flags: set[str] = set()
        values: set[str] = set()
        arguments: list[bool] = []
        for param in command.params:
            if param.param_type_name == "argument":
                arguments.append(param.required)
                continue
            spellings = {*param.opts, *param.secondary_opts}
            (flags if param.is_flag or param.count else values).update(spellings)
        assert (name, set(shape.flags)) == (name, flags)
        assert (name, set(shape.values)) == (name, values)
        assert len(shape.positionals) == len(arguments)
        assert arguments.count(False) == shape.optional


def test_the_values_checked_are_the_ones_the_commands_declare() -> None:
    """Every range, choice, number and existing file a registry command declares for an option is checked, alike."""
    _register_every_command()
    group = typer.main.get_command(app)
    ranges: dict[str, tuple[int, int]] = {}
    choices: dict[str, frozenset[str]] = {}
    floats: set[str] = set()
    files: set[str] = set()
    for name in COMMAND_SHAPES:
        for param in group.commands[name].params:  # type: ignore[attr-defined]
            kind = param.type
            for spelling in param.opts if param.param_type_name == "option" else ():
                if type(kind).__name__ == "IntRange":
                    ranges[spelling] = (kind.min, kind.max)
                elif hasattr(kind, "choices"):
                    assert not kind.case_sensitive
                    choices[spelling] = frozenset(kind.choices)
                elif type(kind).__name__ == "FloatParamType":
                    floats.add(spelling)
                elif getattr(kind, "exists", False):
                    files.add(spelling)
    assert ranges == preconnect.INT_RANGES
    assert choices == preconnect.CHOICES
    assert floats == preconnect.POSITIVE_FLOATS
    assert files == preconnect.EXISTING_FILES


# -- the thread, against real listeners ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_parked_connections() -> Iterator[None]:
    parking.release_all()
    yield
    parking.release_all()


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _listener(opened: list[socket.socket]) -> int:
    sock = socket.create_server(("127.0.0.1", 0))
    opened.append(sock)
    port: int = sock.getsockname()[1]
    return port


def _finish_thread() -> None:
    for thread in threading.enumerate():
        if thread.name == "regtool-early-connect":
            thread.join(10)


def test_the_thread_parks_the_connections_for_each_scheme(listeners: list[socket.socket]) -> None:
    port = _listener(listeners)
    preconnect.start(["pull", f"127.0.0.1:{port}/team/app:1", "out"])
    _finish_thread()
    # A loopback registry is asked over https and http at once: one connection for each.
    assert parking.parked_count("https", "127.0.0.1", port) == 1
    assert parking.parked_count("http", "127.0.0.1", port) == 1


def test_plain_http_parks_for_http_alone(listeners: list[socket.socket]) -> None:
    port = _listener(listeners)
    preconnect.start(["tags", "--plain-http", f"127.0.0.1:{port}/team/app"])
    _finish_thread()
    assert parking.parked_count("http", "127.0.0.1", port) == 1
    assert parking.parked_count("https", "127.0.0.1", port) == 0


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return path


def test_a_read_goes_to_the_mirror_registries_conf_names_first(listeners: list[socket.socket], tmp_path: Path) -> None:
    primary, mirror = _listener(listeners), _listener(listeners)
    conf = _conf(
        tmp_path,
        f'[[registry]]\nprefix = "127.0.0.1:{primary}"\nlocation = "127.0.0.1:{primary}"\n'
        f'[[registry.mirror]]\nlocation = "127.0.0.1:{mirror}"\n',
    )
    preconnect.start(["inspect", "--plain-http", "--registries-conf", str(conf), f"127.0.0.1:{primary}/a:1"])
    _finish_thread()
    assert parking.parked_count("http", "127.0.0.1", mirror) == 1
    assert parking.parked_count("http", "127.0.0.1", primary) == 0
    listeners[0].setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing ever connected to the primary
        listeners[0].accept()


@pytest.mark.parametrize(
    "text",
    [
        '[[registry]]\nprefix = "{primary}"\nlocation = "{primary}"\n[[registry.mirror]]\nlocation = "{mirror}"\n',
        'registry = [{{ prefix = "{primary}", location = "{primary}", mirror = [{{ location = "{mirror}" }}] }}]\n',
    ],
)
def test_the_default_registries_conf_is_read(
    listeners: list[socket.socket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The user's registries.conf (XDG) with a mirror, as a table or inline: the mirror is dialled."""
    primary, mirror = (f"127.0.0.1:{_listener(listeners)}" for _ in range(2))
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "registries.conf").write_text(text.format(primary=primary, mirror=mirror))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    preconnect.start(["pull", "--plain-http", f"{primary}/a:1"])
    _finish_thread()
    assert parking.parked_count("http", "127.0.0.1", int(mirror.rpartition(":")[2])) == 1
    assert parking.parked_count("http", "127.0.0.1", int(primary.rpartition(":")[2])) == 0


def test_short_name_aliases_send_nothing_elsewhere(
    listeners: list[socket.socket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _listener(listeners)
    (tmp_path / "containers").mkdir()
    aliases = '# [[registry]] in a comment\n[aliases]\n"registry" = "docker.io/library/registry"\n'
    (tmp_path / "containers" / "registries.conf").write_text(aliases)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    preconnect.start(["inspect", "--plain-http", f"127.0.0.1:{port}/a:1"])
    _finish_thread()
    assert parking.parked_count("http", "127.0.0.1", port) == 1


def test_a_blocked_registry_is_not_contacted(listeners: list[socket.socket], tmp_path: Path) -> None:
    port = _listener(listeners)
    conf = _conf(tmp_path, f'[[registry]]\nlocation = "127.0.0.1:{port}"\nblocked = true\n')
    preconnect.start(["pull", "--registries-conf", str(conf), f"127.0.0.1:{port}/a:1"])
    _finish_thread()
    listeners[0].setblocking(False)
    with pytest.raises(BlockingIOError):
        listeners[0].accept()


def test_a_copy_from_a_blocked_registry_dials_neither_end(listeners: list[socket.socket], tmp_path: Path) -> None:
    source, target = _listener(listeners), _listener(listeners)
    conf = _conf(tmp_path, f'[[registry]]\nlocation = "127.0.0.1:{source}"\nblocked = true\n')
    preconnect.start(["copy", "--registries-conf", str(conf), f"127.0.0.1:{source}/a:1", f"127.0.0.1:{target}/a:1"])
    _finish_thread()
    for listener in listeners:
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_write_ignores_registries_conf(listeners: list[socket.socket], tmp_path: Path) -> None:
    port = _listener(listeners)
    conf = _conf(tmp_path, f'[[registry]]\nlocation = "127.0.0.1:{port}"\nblocked = true\n')
    # push takes no --registries-conf: a blocked entry there is about reads, and pushes go where they say.
    preconnect.start(["push", "--plain-http", str(conf), f"127.0.0.1:{port}/a:1"])
    _finish_thread()
    assert parking.parked_count("http", "127.0.0.1", port) == 1


# -- the whole path: main, then the command --------------------------------------------------------------------


def test_a_real_run_through_main_sends_its_first_request_over_the_parked_connection(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The relay cuts the first connection it accepts as its request arrives. A connection the pool dialled itself
    would not be tried again (the request may have been processed), so the command would fall back to the ping;
    a parked one is, at once, on a fresh connection: no ping proves the first request went over the parked one."""
    image = write_image(tmp_path / "src", "1.0", [{"a": b"early"}, {"b": bytes(20000)}])
    pushed = regtool("push", "-q", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/app:1.0", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    serve.requests.clear()
    with run_connection_relay(serve.port, cut_first=1, cut_at="request") as relay:
        result = regtool(
            "inspect", "--json", "--plain-http", "--retries", "0", f"{relay.host}/team/app:1.0", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["digest"] == str(image.manifest.digest)
        assert relay.first_bytes(0).startswith(b"GET /v2/team/app/manifests/1.0 ")
    paths = [event.path for event in serve.requests.take()]
    assert paths[0] == "/v2/team/app/manifests/1.0"
    assert "/v2/" not in paths, paths
