"""The Docker Engine (Debian's ``docker.io``) as a test peer: ``dockerd`` as root, without networking.

::

    with run_dockerd(tmp_path / "docker", registry_mirrors=[serve.url]) as engine:
        engine.docker("pull", f"{serve.host}/team/app:1")           # check=True: a failure shows docker's stderr
        engine.inspect_image(f"{serve.host}/team/app:1")["Id"]       # the image's config digest

``dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs`` needs no kernel modules, no
netfilter and no overlay mounts, so it runs in a CI container as well as here; its data root is under the test's
directory, its exec root and sockets under a short /tmp directory (a unix socket path has at most 107 bytes, and
containerd's sockets live below the exec root). The docker CLI talks to it through ``DOCKER_HOST`` with its own
``DOCKER_CONFIG`` (``docker login`` writes there, never to the user's ~/.docker), and without proxy variables
(the engine would send registry traffic to a proxy). 127.0.0.0/8 registries are plain HTTP by default.

``dockerd`` and ``docker`` are found with ``require_binary``: missing under CI (``CI`` set) the test fails.
A dockerd that does not come up fails the test with the end of its log. A CI container may have no cgroup
hierarchy mounted: the engine then starts with warnings only (it runs no container here), which
``without_cgroups=True`` checks by starting it in a mount namespace whose /sys/fs/cgroup is an empty tmpfs. It is
stopped with SIGTERM (it stops the containerd it started), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_binary
from tests.support.distribution import stop_process

__all__ = ["Dockerd", "dockerd", "run_dockerd"]

# dockerd answers `docker version` about 2 s after its start here; a loaded CI machine gets much longer.
START_TIMEOUT = 60.0


@dataclass
class Dockerd:
    """A running engine: ``docker(...)`` runs the CLI against it; ``config_dir`` is the CLI's DOCKER_CONFIG."""

    socket: Path
    data_root: Path
    config_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    docker_binary: str

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        env["DOCKER_CONFIG"] = str(self.config_dir)
        return env

    def docker(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; with ``check``, a failure raises naming docker's stderr."""
        done = subprocess.run(
            [self.docker_binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def inspect_image(self, name: str) -> dict[str, Any]:
        """``docker image inspect NAME`` as a dict (Id, RepoTags, RepoDigests, RootFS, Config...)."""
        (info,) = json.loads(self.docker("image", "inspect", name).stdout)
        assert isinstance(info, dict)
        return info

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _require_root() -> None:
    if os.geteuid() != 0:
        message = "dockerd needs root"
        if IN_CI:
            pytest.fail(f"{message}; the Docker Engine tests must run under CI")
        pytest.skip(message)


@contextlib.contextmanager
def run_dockerd(
    root: Path,
    *,
    registry_mirrors: Sequence[str] = (),
    insecure_registries: Sequence[str] = (),
    without_cgroups: bool = False,
) -> Iterator[Dockerd]:
    """Start ``dockerd`` with its data under ``root``; ``registry_mirrors`` become ``--registry-mirror`` (what
    ``docker pull`` of a docker.io image asks first). Stopped, and its exec root removed, on exit."""
    binary = require_binary("dockerd")
    docker_binary = require_binary("docker")
    _require_root()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="rtdockerd-", dir="/tmp"))
    socket = run_dir / "docker.sock"
    config_dir = root / "client-config"
    config_dir.mkdir(exist_ok=True)
    log_path = root / "dockerd.log"
    command = [
        binary,
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver=vfs",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(run_dir / "exec"),
        "--host",
        f"unix://{socket}",
        "--pidfile",
        str(run_dir / "dockerd.pid"),
    ]
    for mirror in registry_mirrors:
        command += ["--registry-mirror", mirror]
    for registry in insecure_registries:
        command += ["--insecure-registry", registry]
    if without_cgroups:
        # unshare and sh exec into dockerd, so the pid stays dockerd's.
        hide = 'mount -t tmpfs none /sys/fs/cgroup && exec "$@"'
        command = [require_binary("unshare"), "-m", "--propagation", "private", "sh", "-c", hide, "sh", *command]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("DOCKER_")}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    engine = Dockerd(socket, root / "data", config_dir, log_path, process, docker_binary)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {process.returncode} at start:\n{engine.log_tail()}")
            if socket.exists() and engine.docker("version", check=False, timeout=30).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:g} s:\n{engine.log_tail()}")
            time.sleep(0.2)
        yield engine
    finally:
        children = _children(process.pid)
        stop_process(process, timeout=30)
        # A dockerd that had to be killed leaves the containerd it started: stop that too, by its pid.
        for pid in children:
            with contextlib.suppress(OSError):
                if str(run_dir) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """One engine for a test module (it takes seconds to start); tests use their own image names."""
    with run_dockerd(tmp_path_factory.mktemp("docker")) as engine:
        yield engine
