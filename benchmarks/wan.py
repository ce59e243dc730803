"""A far registry: regtool against skopeo and containerd's ctr through a latency proxy (a WAN on loopback).

    python benchmarks/wan.py [--runs 5] [--delay-ms 50] [--images 16x1M,64x256K] [--only pull,push,v1v2,oneshot]
                             [--work DIR]

Every registry runs on 127.0.0.1; clients reach it through ``benchmarks/latency_proxy.py`` (a copy of the shared
tools' proxy), which holds the first bytes of each request burst for ``--delay-ms`` and the first bytes of each new
connection for the same again (the handshake), and leaves bandwidth unlimited: request round trips and new
connections are what cost. Images are N layers of M bytes of random data (``tests/support/images.py``'s
``write_random_image``: gzip level 0, incompressible), ``16x1M`` and ``64x256K`` by default (16 MiB each: the
latency, not the bandwidth, dominates). Sections (``--only``):

- ``pull``: one docker-registry (distribution 2.8.2) seeded with each image by skopeo, then, interleaved (the
  order rotates every run), ``regtool pull --quiet IMAGE DIR`` (fresh DIR), ``skopeo copy
  --src-tls-verify=false docker://IMAGE oci:DIR:bench`` (fresh DIR) and ``ctr --address SOCK content fetch
  --plain-http IMAGE`` into a containerd started here (CRI plugin disabled; own root, state and socket) whose
  content store and image record are cleared, untimed, before every ctr run.
- ``push``: ``regtool push --quiet LAYOUT:bench IMAGE`` vs ``skopeo copy --dest-tls-verify=false oci:LAYOUT:bench
  docker://IMAGE``, each run into a FRESH docker-registry behind a FRESH proxy (new ports, so a new registry name
  for skopeo's blob-info cache, which has no switch in skopeo 1.9 and would otherwise turn uploads into
  cross-repository mounts) and a repository name not used before (``bench/wan-PID-...``). The registry's access
  log is checked for mount attempts.
- ``v1v2``: ``regtool serve`` (a subprocess; it speaks v1 and v2) seeded over both protocols with each image, then
  ``regtool pull --quiet --protocol v1`` vs ``--protocol v2`` through the proxy, alternating; v2's speed-up.
- ``oneshot``: ``regtool inspect`` / ``skopeo inspect --no-tags`` (skopeo otherwise also lists the tags) and
  ``regtool tags`` / ``skopeo list-tags`` on loopback (no proxy) and through the proxy, plus ``regtool --version``
  and ``skopeo --version`` as each tool's start-up floor, so start-up and request round trips can be told apart.

A fresh proxy is started for every timed run (untimed), so its connection count belongs to that one run; the
registries' access logs give the number of HTTP requests of each run. Wall time is measured around the child
process; peak RSS is the child's, from GNU time's ``%M`` (os.wait4's ``ru_maxrss`` would include this process's
own peak; for ctr it is the client's only: the containerd daemon writes the blobs). ``sync`` runs before every
timed run, and the 1-minute load average just before each run is recorded (figures mean little when it is above
~1 on a 2-CPU machine). regtool's bytecode is compiled first, and regtool runs as the venv's ``regtool`` script,
as in ``pull_push_vs_skopeo.py``, with its default ``--jobs``.

Known skew: regtool (https first on a loopback host, then plain http, as docker does) and skopeo
(``--*-tls-verify=false``: the same) both open a connection and send a TLS ClientHello that the plain-HTTP
registry rejects before they fall back, about two delays per run (see ``regtool -vv``) that ctr (``--plain-http``)
does not pay. A real far registry would be HTTPS for everyone, with a TLS handshake per new connection that the
proxy does not model. (skopeo 1.9.3 opens a new connection for nearly every request, with or without the proxy:
compare the requests and connections columns.)

Prints progress, then Markdown tables (medians, ratios, samples) and the machine, ready for BENCHMARKS.md.
Nothing here is a test. Generated images are kept in ``--work`` for the next invocation; registries are removed.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import http.client
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import regtool  # noqa: E402
from benchmarks.childrun import GNU_TIME, run_child  # noqa: E402
from tests.support.distribution import Distribution, free_port, run_distribution, stop_process  # noqa: E402
from tests.support.images import write_random_image  # noqa: E402
from tests.support.serve import run_serve_process  # noqa: E402

PROXY_SCRIPT = Path(__file__).resolve().parent / "latency_proxy.py"
SECTIONS = ("pull", "push", "v1v2", "oneshot")
TAG = "bench"  # the tag of the image in every source layout
_REQUEST = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+)(?: HTTP/[\d.]+)?"')
T = TypeVar("T")
_SIZE = re.compile(r"(\d+)x(\d+)([KMG]?)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    rss_mib: float
    load: float  # the 1-minute load average just before the run
    requests: int | None = None  # HTTP requests the registry logged during the run
    connections: int | None = None  # connections the proxy accepted during the run (None: no proxy)
    cpu_seconds: float | None = None  # user + system CPU of the child (and of what it waited for)


def _timed(tool: str, argv: Sequence[str]) -> Run:
    """Run ``argv``: wall time, peak RSS and CPU of the child alone (``benchmarks/childrun.py``)."""
    run = run_child(argv)
    return Run(tool, run.seconds, run.rss_mib, run.load, cpu_seconds=run.cpu_seconds)


def _regtool() -> list[str]:
    exe = shutil.which("regtool", path=str(Path(sys.executable).parent)) or shutil.which("regtool")
    return [exe] if exe else [sys.executable, "-m", "regtool"]


def _rotate(items: Sequence[T], n: int) -> list[T]:
    k = n % len(items)
    return [*items[k:], *items[:k]]


def _median(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


class AccessLog:
    """Counts the requests a registry logged (combined-format or regtool serve lines) since the last ``mark``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> list[tuple[str, str]]:
        time.sleep(0.1)  # the server logs a request just after its last bytes leave
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(text)]


# ---------------------------------------------------------------------------------------------------- peers


@dataclass
class Proxy:
    host: str  # 127.0.0.1:PORT
    log: Path
    process: subprocess.Popen[bytes]

    def connections(self) -> int | None:
        """Connections served, from the line the proxy prints when stopped (None before that)."""
        found = re.findall(r"latency_proxy: (\d+) connections served", self.log.read_text(errors="replace"))
        return int(found[-1]) if found else None


@contextlib.contextmanager
def latency_proxy(target_port: int, delay_ms: float, log_dir: Path) -> Iterator[Proxy]:
    """``benchmarks/latency_proxy.py`` on a free port in front of 127.0.0.1:``target_port``; stopped on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        port = free_port()
        log = log_dir / f"proxy-{port}-{time.monotonic_ns()}.log"
        argv = [sys.executable, str(PROXY_SCRIPT), "--listen", f"127.0.0.1:{port}"]
        argv += ["--target", f"127.0.0.1:{target_port}", "--delay-ms", f"{delay_ms:g}"]
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        ready = f"latency_proxy 127.0.0.1:{port} ->"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None and ready not in log.read_text():
            time.sleep(0.01)
        if process.poll() is None and ready in log.read_text():
            break
        stop_process(process)
    else:
        raise RuntimeError(f"latency proxy did not start; see {log}")
    proxy = Proxy(f"127.0.0.1:{port}", log, process)
    try:
        yield proxy
    finally:
        stop_process(process, timeout=10)


@dataclass(frozen=True)
class Containerd:
    socket: str
    root: Path
    process: subprocess.Popen[bytes]

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", self.socket, *args]

    def _run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(self.ctr(*args), capture_output=True, text=True)
        if check and done.returncode != 0:
            raise SystemExit(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def content(self) -> list[str]:
        return self._run("content", "ls", "-q").split()

    def clear(self) -> None:
        """Remove every image record and every blob (the next fetch must download everything)."""
        images = self._run("images", "ls", "-q").split()
        if images:
            self._run("images", "rm", "--sync", *images)
        blobs = self.content()
        if blobs:
            self._run("content", "rm", *blobs)
        left = self.content()
        if left:
            raise SystemExit(f"containerd's content store still holds {len(left)} blobs after clearing")


_CONTAINERD_CONFIG = """\
version = 2
# The CRI plugin is not needed for ctr content fetch. (In containerd 1.6 a "disable = true" key inside
# [plugins."io.containerd.grpc.v1.cri"] does not stop it from starting; disabled_plugins does.)
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


@contextlib.contextmanager
def run_containerd(work: Path) -> Iterator[Containerd]:
    """containerd with its own root and state under ``work`` and a socket in a short /tmp directory."""
    base = Path(tempfile.mkdtemp(prefix="containerd-", dir=work))
    sockdir = Path(tempfile.mkdtemp(prefix="regtool-wan-ctr-"))  # a unix socket path must stay under 108 bytes
    socket = str(sockdir / "containerd.sock")
    config = base / "config.toml"
    config.write_text(_CONTAINERD_CONFIG.format(root=base / "root", state=base / "state", socket=socket))
    with open(base / "containerd.log", "wb") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    handle = Containerd(socket, base, process)
    try:
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            if subprocess.run(handle.ctr("version"), capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"containerd did not start; see {base / 'containerd.log'}")
        yield handle
    finally:
        stop_process(process, timeout=15)
        shutil.rmtree(sockdir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageSpec:
    spec: str  # as given, e.g. 16x1M
    count: int
    size: int  # bytes per layer

    @property
    def label(self) -> str:
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if self.size >= 1 << shift and self.size % (1 << shift) == 0:
                return f"{self.count} x {self.size >> shift} {unit}"
        return f"{self.count} x {self.size} B"

    @property
    def name(self) -> str:  # for repository and directory names
        return self.spec.lower()


def parse_image(spec: str) -> ImageSpec:
    match = _SIZE.fullmatch(spec.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"image {spec!r} is not COUNTxSIZE[K|M|G], e.g. 16x1M")
    shift = {"": 0, "k": 10, "m": 20, "g": 30}[match.group(3).lower()]
    return ImageSpec(spec.strip(), int(match.group(1)), int(match.group(2)) << shift)


def _layout(work: Path, image: ImageSpec) -> Path:
    layout = work / f"src-{image.name}"
    if not (layout / "index.json").exists():
        shutil.rmtree(layout, ignore_errors=True)
        print(f"generating {image.label} image in {layout} ...", flush=True)
        write_random_image(layout, TAG, count=image.count, size=image.size)
    return layout


def _digests(layout: Path) -> set[str]:
    blobs = layout / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in blobs.iterdir()} if blobs.is_dir() else set()


def _check_pulled(source: Path, dest: Path, tool: str) -> None:
    missing = _digests(source) - _digests(dest)
    if missing:
        raise SystemExit(f"{tool} left {len(missing)} of the image's blobs out of {dest}")


def _seed(layout: Path, image: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{TAG}", f"docker://{image}"],
        check=True,
        capture_output=True,
    )


def _has_manifest(registry: Distribution, repository: str, tag: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)
    try:
        accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        conn.request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": accept})
        return conn.getresponse().status == 200
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------- sections


@dataclass
class Results:
    delay_ms: float
    pull: dict[str, list[Run]] = field(default_factory=dict)  # image label -> runs
    push: dict[str, list[Run]] = field(default_factory=dict)
    v1v2: dict[str, list[Run]] = field(default_factory=dict)
    oneshot: list[tuple[str, str, Run]] = field(default_factory=list)  # (command, "loopback" | "delay", run)
    notes: list[str] = field(default_factory=list)


def _progress(kind: str, label: str, i: int, run: Run) -> None:
    extra = f" {run.requests} req" if run.requests is not None else ""
    extra += f" {run.connections} conn" if run.connections is not None else ""
    print(
        f"  {kind} {label} run {i + 1}: {run.tool:8} {run.seconds:6.2f} s  {run.rss_mib:6.1f} MiB{extra}"
        f"  load {run.load:.2f}",
        flush=True,
    )


def pull_section(
    image: ImageSpec, layout: Path, work: Path, runs: int, delay_ms: float, containerd: Containerd | None
) -> list[Run]:
    tools = ("regtool", "skopeo", "ctr") if containerd is not None else ("regtool", "skopeo")
    root = work / f"registry-pull-{image.name}"
    shutil.rmtree(root, ignore_errors=True)
    results: list[Run] = []
    repository = f"bench/{image.name}"
    with run_distribution(root, quiet=False) as registry:
        _seed(layout, f"{registry.host}/{repository}:1")
        access = AccessLog(registry.log_path)
        for i in range(runs):
            for tool in _rotate(tools, i):
                dest = work / f"pull-{tool}-{image.name}-{i}"
                shutil.rmtree(dest, ignore_errors=True)
                if containerd is not None and tool == "ctr":
                    containerd.clear()
                with latency_proxy(registry.port, delay_ms, work / "proxy-logs") as proxy:
                    ref = f"{proxy.host}/{repository}:1"
                    if tool == "regtool":
                        argv = [*_regtool(), "pull", "--quiet", ref, str(dest)]
                    elif tool == "skopeo":
                        argv = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:{TAG}"]
                    else:
                        assert containerd is not None
                        argv = containerd.ctr("content", "fetch", "--plain-http", ref)
                    access.mark()
                    run = _timed(tool, argv)
                    requests = len(access.since_mark())
                if tool == "ctr":
                    assert containerd is not None
                    missing = _digests(layout) - set(containerd.content())
                    if missing:
                        raise SystemExit(f"ctr content fetch left {len(missing)} blobs out of the content store")
                else:
                    _check_pulled(layout, dest, tool)
                shutil.rmtree(dest, ignore_errors=True)
                run = Run(tool, run.seconds, run.rss_mib, run.load, requests, proxy.connections())
                results.append(run)
                _progress("pull", image.label, i, run)
        if containerd is not None:
            containerd.clear()
    shutil.rmtree(root, ignore_errors=True)
    return results


def push_section(image: ImageSpec, layout: Path, work: Path, runs: int, delay_ms: float, notes: list[str]) -> list[Run]:
    results: list[Run] = []
    for i in range(runs):
        for tool in _rotate(("regtool", "skopeo"), i):
            root = work / f"registry-push-{image.name}-{tool}-{i}"
            shutil.rmtree(root, ignore_errors=True)
            repository = f"bench/wan-{os.getpid()}-{image.name}-{tool}-{i}"
            with run_distribution(root, quiet=False) as registry:
                access = AccessLog(registry.log_path)
                with latency_proxy(registry.port, delay_ms, work / "proxy-logs") as proxy:
                    ref = f"{proxy.host}/{repository}:1"
                    if tool == "regtool":
                        argv = [*_regtool(), "push", "--quiet", f"{layout}:{TAG}", ref]
                    else:
                        argv = ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{TAG}", f"docker://{ref}"]
                    access.mark()
                    run = _timed(tool, argv)
                    requests = access.since_mark()
                if not _has_manifest(registry, repository, "1"):
                    raise SystemExit(f"{tool} push left no manifest {repository}:1 in {registry.host}")
                mounts = [path for method, path in requests if method == "POST" and "mount=" in path]
                if mounts:
                    notes.append(f"push {image.label} run {i + 1}: {tool} tried {len(mounts)} cross-repository mounts")
            shutil.rmtree(root, ignore_errors=True)
            run = Run(tool, run.seconds, run.rss_mib, run.load, len(requests), proxy.connections())
            results.append(run)
            _progress("push", image.label, i, run)
    return results


def v1v2_section(image: ImageSpec, layout: Path, work: Path, runs: int, delay_ms: float) -> list[Run]:
    root = work / f"serve-v1v2-{image.name}"
    shutil.rmtree(root, ignore_errors=True)
    results: list[Run] = []
    repository = f"bench/{image.name}"
    with run_serve_process(root) as server:  # with its access log (in server.log_path), to count requests
        for protocol in ("v1", "v2"):
            seed = [*_regtool(), "push", "--quiet", "--protocol", protocol, f"{layout}:{TAG}"]
            subprocess.run([*seed, f"{server.host}/{repository}:1"], check=True, capture_output=True)
        access = AccessLog(server.log_path)
        for i in range(runs):
            for protocol in _rotate(("v1", "v2"), i):
                dest = work / f"pull-{protocol}-{image.name}-{i}"
                shutil.rmtree(dest, ignore_errors=True)
                with latency_proxy(server.port, delay_ms, work / "proxy-logs") as proxy:
                    argv = [*_regtool(), "pull", "--quiet", "--protocol", protocol, f"{proxy.host}/{repository}:1"]
                    access.mark()
                    run = _timed(protocol, [*argv, str(dest)])
                    requests = len(access.since_mark())
                if not (dest / "index.json").exists():
                    raise SystemExit(f"regtool pull --protocol {protocol} wrote no OCI layout in {dest}")
                shutil.rmtree(dest, ignore_errors=True)
                run = Run(protocol, run.seconds, run.rss_mib, run.load, requests, proxy.connections())
                results.append(run)
                _progress("v1v2", image.label, i, run)
    shutil.rmtree(root, ignore_errors=True)
    server.log_path.unlink(missing_ok=True)
    return results


ONESHOT = (
    "regtool --version",
    "skopeo --version",
    "regtool inspect",
    "skopeo inspect --no-tags",
    "regtool tags",
    "skopeo list-tags",
)


def _oneshot_argv(command: str, host: str, repository: str) -> list[str]:
    ref = f"{host}/{repository}:1"
    return {
        "regtool --version": [*_regtool(), "--version"],
        "skopeo --version": ["skopeo", "--version"],
        "regtool inspect": [*_regtool(), "inspect", ref],
        "skopeo inspect --no-tags": ["skopeo", "inspect", "--no-tags", "--tls-verify=false", f"docker://{ref}"],
        "regtool tags": [*_regtool(), "tags", f"{host}/{repository}"],
        "skopeo list-tags": ["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repository}"],
    }[command]


def oneshot_section(layout: Path, work: Path, runs: int, delay_ms: float) -> list[tuple[str, str, Run]]:
    root = work / "registry-oneshot"
    shutil.rmtree(root, ignore_errors=True)
    repository = "bench/oneshot"
    results: list[tuple[str, str, Run]] = []
    cases = [(command, where) for command in ONESHOT for where in ("loopback", "delay")]
    with run_distribution(root, quiet=False) as registry:
        for tag in ("1", "2", "3"):
            _seed(layout, f"{registry.host}/{repository}:{tag}")
        access = AccessLog(registry.log_path)
        for i in range(runs):
            for command, where in _rotate(cases, i):
                with contextlib.ExitStack() as stack:
                    host, proxy = registry.host, None
                    if where == "delay":
                        proxy = stack.enter_context(latency_proxy(registry.port, delay_ms, work / "proxy-logs"))
                        host = proxy.host
                    access.mark()
                    run = _timed(command, _oneshot_argv(command, host, repository))
                    requests = len(access.since_mark())
                connections = proxy.connections() if proxy is not None else None
                run = Run(command, run.seconds, run.rss_mib, run.load, requests, connections)
                results.append((command, where, run))
                _progress("oneshot", where, i, run)
    shutil.rmtree(root, ignore_errors=True)
    return results


# ---------------------------------------------------------------------------------------------------- report


def _samples(runs: Sequence[Run]) -> str:
    return " ".join(f"{r.seconds:.2f}" for r in runs)


def _counts(runs: Sequence[Run], attr: str) -> str:
    values = sorted({getattr(r, attr) for r in runs if getattr(r, attr) is not None})
    return "-".join(str(v) for v in (values[:1] + values[-1:] if len(values) > 1 else values)) or "-"


def _loads(runs: Sequence[Run]) -> str:
    return f"{min(r.load for r in runs):.2f}-{max(r.load for r in runs):.2f}"


def _tool_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def machine() -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / (1 << 20):.1f} GiB"
    uname = platform.uname()
    return [
        f"- uname: {uname.system} {uname.release} {uname.version} {uname.machine}",
        f"- CPU: {os.cpu_count()} x {cpu} (nproc {len(os.sched_getaffinity(0))}), RAM {mem}",
        f"- Python {platform.python_version()} ({sys.executable}); "
        f"{_tool_version([*_regtool(), '--version'])} ({Path(regtool.__file__).parent})",
        f"- {_tool_version(['skopeo', '--version'])}; {_tool_version(['docker-registry', '--version'])}",
        f"- {_tool_version(['containerd', '--version'])}; {_tool_version(['ctr', '--version'])}",
    ]


def _pull_table(pull: dict[str, list[Run]], d: str) -> list[str]:
    has_ctr = any(r.tool == "ctr" for runs in pull.values() for r in runs)
    tools = ("regtool", "skopeo", "ctr") if has_ctr else ("regtool", "skopeo")
    out = ["", f"### pull through the proxy ({d})", ""]
    if has_ctr:
        out += [
            "| image | regtool | skopeo | ctr content fetch | regtool / skopeo | regtool / ctr "
            "| requests r / s / c | connections r / s / c | peak RSS MiB r / s / c | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
    else:
        out += [
            "| image | regtool | skopeo | regtool / skopeo | requests r / s | connections r / s "
            "| peak RSS MiB r / s | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
    samples: list[str] = []
    for label, runs in pull.items():
        by = {tool: [r for r in runs if r.tool == tool] for tool in tools}
        med = {tool: _median(by[tool]) for tool in tools}
        cells = " | ".join(f"{med[t]:.2f} s" for t in tools)
        ratios = " | ".join(f"**{med['regtool'] / med[t]:.2f}**" for t in tools[1:])
        requests = " / ".join(_counts(by[t], "requests") for t in tools)
        conns = " / ".join(_counts(by[t], "connections") for t in tools)
        rss = " / ".join(f"{max(r.rss_mib for r in by[t]):.0f}" for t in tools)
        out.append(f"| {label} | {cells} | {ratios} | {requests} | {conns} | {rss} | {_loads(runs)} |")
        samples.append(f"{label}: " + "; ".join(f"{t} {_samples(by[t])}" for t in tools))
    out += ["", "Samples (s): " + ". ".join(samples) + "."]
    if has_ctr:
        out.append("ctr's peak RSS is the client's only (the containerd daemon writes the blobs).")
    return out


def _push_table(push: dict[str, list[Run]], d: str) -> list[str]:
    out = [
        "",
        f"### push through the proxy ({d}), a fresh registry and proxy per push",
        "",
        "| image | regtool | skopeo | regtool / skopeo | requests r / s | connections r / s "
        "| peak RSS MiB r / s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    samples: list[str] = []
    for label, runs in push.items():
        ours = [r for r in runs if r.tool == "regtool"]
        theirs = [r for r in runs if r.tool == "skopeo"]
        out.append(
            f"| {label} | {_median(ours):.2f} s | {_median(theirs):.2f} s "
            f"| **{_median(ours) / _median(theirs):.2f}** | {_counts(ours, 'requests')} / "
            f"{_counts(theirs, 'requests')} | {_counts(ours, 'connections')} / {_counts(theirs, 'connections')} "
            f"| {max(r.rss_mib for r in ours):.0f} / {max(r.rss_mib for r in theirs):.0f} | {_loads(runs)} |"
        )
        samples.append(f"{label}: regtool {_samples(ours)}; skopeo {_samples(theirs)}")
    return [*out, "", "Samples (s): " + ". ".join(samples) + "."]


def _v1v2_table(v1v2: dict[str, list[Run]], d: str) -> list[str]:
    out = [
        "",
        f"### regtool pull over v1 vs v2 from `regtool serve` through the proxy ({d})",
        "",
        "| image | v1 (serial) | v2 | v2 speed-up (v1 / v2) | requests v1 / v2 | connections v1 / v2 | load |",
        "|---|---|---|---|---|---|---|",
    ]
    samples: list[str] = []
    for label, runs in v1v2.items():
        v1 = [r for r in runs if r.tool == "v1"]
        v2 = [r for r in runs if r.tool == "v2"]
        out.append(
            f"| {label} | {_median(v1):.2f} s | {_median(v2):.2f} s | **{_median(v1) / _median(v2):.1f}x** "
            f"| {_counts(v1, 'requests')} / {_counts(v2, 'requests')} "
            f"| {_counts(v1, 'connections')} / {_counts(v2, 'connections')} | {_loads(runs)} |"
        )
        samples.append(f"{label}: v1 {_samples(v1)}; v2 {_samples(v2)}")
    return [*out, "", "Samples (s): " + ". ".join(samples) + "."]


def _oneshot_table(oneshot: list[tuple[str, str, Run]], d: str) -> list[str]:
    out = [
        "",
        f"### one-shot commands, loopback and through the proxy ({d})",
        "",
        f"| command | loopback | +{d} | added by the delay | requests | connections at +{d} | load |",
        "|---|---|---|---|---|---|---|",
    ]
    med: dict[tuple[str, str], float] = {}
    samples: list[str] = []
    for command in ONESHOT:
        rows = {where: [r for c, w, r in oneshot if c == command and w == where] for where in ("loopback", "delay")}
        if not rows["loopback"] or not rows["delay"]:
            continue
        lo = med[command, "loopback"] = _median(rows["loopback"])
        hi = med[command, "delay"] = _median(rows["delay"])
        out.append(
            f"| `{command}` | {lo:.3f} s | {hi:.3f} s | {hi - lo:+.3f} s | {_counts(rows['delay'], 'requests')} "
            f"| {_counts(rows['delay'], 'connections')} | {_loads(rows['loopback'] + rows['delay'])} |"
        )
        samples.append(f"{command}: {_samples(rows['loopback'])} / {_samples(rows['delay'])}")
    out.append("")
    for ours, theirs in (("regtool inspect", "skopeo inspect --no-tags"), ("regtool tags", "skopeo list-tags")):
        if not all((c, "delay") in med for c in (ours, theirs, "regtool --version", "skopeo --version")):
            continue
        ratios = [med[ours, w] / med[theirs, w] for w in ("loopback", "delay")]
        ours_net = [med[ours, w] - med["regtool --version", w] for w in ("loopback", "delay")]
        theirs_net = [med[theirs, w] - med["skopeo --version", w] for w in ("loopback", "delay")]
        out.append(
            f"- `{ours}` / `{theirs}`: **{ratios[0]:.2f}** on loopback, **{ratios[1]:.2f}** at +{d}. Beyond each "
            f"tool's `--version` floor (loopback / +{d}): regtool {ours_net[0]:.3f} / {ours_net[1]:.3f} s, "
            f"skopeo {theirs_net[0]:.3f} / {theirs_net[1]:.3f} s."
        )
    return [*out, "", "Samples (s, loopback / delayed): " + ". ".join(samples) + "."]


def report(results: Results, args: argparse.Namespace, started: str) -> None:
    d = f"{results.delay_ms:g} ms"
    out: list[str] = [
        "",
        f"## WAN: +{d} per request and per new connection (benchmarks/wan.py)",
        "",
        f"`python benchmarks/wan.py --runs {args.runs} --delay-ms {results.delay_ms:g} --images {args.images} "
        f"--only {args.only}`, {started} to {_now()}; medians of {args.runs} interleaved runs. Requests: as logged "
        "by the registry (min-max over the runs); connections: as accepted by the proxy.",
        "",
        "Machine:",
        "",
        *machine(),
    ]
    if results.pull:
        out += _pull_table(results.pull, d)
    if results.push:
        out += _push_table(results.push, d)
    if results.v1v2:
        out += _v1v2_table(results.v1v2, d)
    if results.oneshot:
        out += _oneshot_table(results.oneshot, d)
    if results.notes:
        out += ["", "Notes:", "", *[f"- {note}" for note in results.notes]]
    print("\n".join(out), flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per contestant (default 5)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="per request and per new connection (50)")
    parser.add_argument("--images", default="16x1M,64x256K", help="comma-separated COUNTxSIZE, SIZE with K/M/G")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-bench-wan"))
    args = parser.parse_args()
    if args.runs < 1 or args.delay_ms < 0:
        parser.error("--runs must be at least 1 and --delay-ms at least 0")
    images = [parse_image(spec) for spec in args.images.split(",") if spec.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown or not only or not images:
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}" if unknown else "nothing to run")
    for binary in ("skopeo", "docker-registry"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed")
    # An installed regtool has its bytecode; a working tree may not, and would compile on every run (start-up).
    compileall.compile_dir(str(Path(regtool.__file__).parent), quiet=1)
    preflight = subprocess.run([*_regtool(), "--version"], capture_output=True, text=True)
    if preflight.returncode != 0:
        raise SystemExit(
            f"regtool itself does not start ({' '.join(_regtool())} --version):\n{preflight.stderr[-2000:]}"
        )
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    started = _now()
    print(
        f"{started}: sections {', '.join(only)}; images {', '.join(i.label for i in images)}; "
        f"delay {args.delay_ms:g} ms; {args.runs} runs; work {work}",
        flush=True,
    )
    results = Results(args.delay_ms)
    if not GNU_TIME:
        results.notes.append("GNU time is not installed: peak RSS is os.wait4's, which includes this process's own")
    layouts = {image.spec: _layout(work, image) for image in images}
    with contextlib.ExitStack() as stack:
        containerd: Containerd | None = None
        if "pull" in only:
            if shutil.which("containerd") and shutil.which("ctr"):
                containerd = stack.enter_context(run_containerd(work))
            else:
                results.notes.append("containerd/ctr not installed: pull compares regtool and skopeo only")
        for image in images:
            layout = layouts[image.spec]
            if "pull" in only:
                results.pull[image.label] = pull_section(image, layout, work, args.runs, args.delay_ms, containerd)
            if "push" in only:
                results.push[image.label] = push_section(image, layout, work, args.runs, args.delay_ms, results.notes)
            if "v1v2" in only:
                results.v1v2[image.label] = v1v2_section(image, layout, work, args.runs, args.delay_ms)
    if "oneshot" in only:
        results.oneshot = oneshot_section(layouts[images[0].spec], work, args.runs, args.delay_ms)
    shutil.rmtree(work / "proxy-logs", ignore_errors=True)
    report(results, args, started)


if __name__ == "__main__":
    main()
