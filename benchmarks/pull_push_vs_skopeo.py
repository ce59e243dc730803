"""regtool pull/push against skopeo copy, on the same docker-registry (distribution), interleaved.

    python benchmarks/pull_push_vs_skopeo.py [--runs 3] [--work DIR] [--images 16x32,2x512] [--jobs 8]
                                             [--baseline DIR] [--archive] [--copy]

For each image (N layers of M MiB of random bytes, gzip level 0: incompressible, as registries hold layers):

- pull: ``regtool pull --quiet IMAGE DIR`` vs ``skopeo copy docker://IMAGE oci:DIR`` from one docker-registry,
  alternating (regtool, skopeo, regtool, ...), a fresh destination each run;
- push: ``regtool push --quiet oci-layout IMAGE`` vs ``skopeo copy oci:LAYOUT docker://IMAGE``, each run into a
  FRESH docker-registry (new storage, new port): nothing to skip, and skopeo's blob-info cache (which has no
  command-line switch in 1.9) cannot offer a mount or reuse location on a registry it has never seen.

With ``--archive`` the same image goes through a docker-archive (what ``docker save`` writes: uncompressed
layers, so a push must gzip them): push ``regtool push --quiet IMAGE.tar IMAGE`` vs ``skopeo copy
docker-archive:IMAGE.tar docker://IMAGE``, each into a fresh registry; pull ``regtool pull --quiet IMAGE OUT.tar``
vs ``skopeo copy docker://IMAGE docker-archive:OUT.tar``, with regtool's pull into a layout timed alongside, so
the cost of writing an archive (decompressing every layer) shows next to the layout's, and next to the
decompression's own cost measured alone (``benchmarks/inflate_alone.py``: inflate, hash and write each layer).

With ``--copy``: registry to registry, ``regtool copy --quiet SRC DST`` vs ``skopeo copy docker://SRC
docker://DST``, from one docker-registry into a fresh one each run (nothing to skip or mount).

Wall time is measured around the child process; peak RSS is the child's alone (``benchmarks/childrun.py``: GNU
time's ``%M``). ``sync`` runs before every timed run so one run's dirty pages are not written back during the next.
Prints a table and the
median ratios (regtool / skopeo), with the range of the 1-minute load average seen just before the runs (the
figures mean little when it is above ~1 on a 2-CPU machine). ``--baseline DIR`` adds a third contestant, interleaved
with the other two: the same ``regtool`` command with ``DIR`` (a directory holding another version's ``regtool``
package, e.g. ``git archive`` of an older commit) first on ``PYTHONPATH``, for before/after figures taken under the
same conditions. Nothing here is a test: the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bytecode import compile_for_runs  # noqa: E402
from benchmarks.childrun import run_child  # noqa: E402
from tests.support.distribution import Distribution, run_distribution  # noqa: E402
from tests.support.images import write_random_image  # noqa: E402


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    rss_mib: float
    load: float = 0.0  # the 1-minute load average just before the run
    cpu_seconds: float = 0.0  # the child's user + system CPU time: what load on the machine does not inflate

    def _replace_tool(self, tool: str) -> Run:
        return Run(tool, self.seconds, self.rss_mib, self.load, self.cpu_seconds)


def _timed(argv: list[str], env: dict[str, str] | None = None) -> Run:
    run = run_child(argv, env)
    return Run(Path(argv[0]).name, run.seconds, run.rss_mib, run.load, run.cpu_seconds)


def _regtool() -> list[str]:
    exe = shutil.which("regtool", path=str(Path(sys.executable).parent)) or shutil.which("regtool")
    return [exe] if exe else [sys.executable, "-m", "regtool"]


def _image(work: Path, count: int, mib: int) -> Path:
    layout = work / f"src-{count}x{mib}"
    if not (layout / "index.json").exists():
        shutil.rmtree(layout, ignore_errors=True)
        print(f"generating {count} x {mib} MiB image in {layout} ...", flush=True)
        write_random_image(layout, "bench", count=count, size=mib << 20)
    return layout


def _tools(baseline: Path | None) -> tuple[str, ...]:
    return ("regtool", "skopeo", "baseline") if baseline is not None else ("regtool", "skopeo")


def _regtool_env(tool: str, baseline: Path | None) -> dict[str, str] | None:
    """The environment of a regtool run: ``baseline`` first on PYTHONPATH for the baseline contestant."""
    if tool != "baseline" or baseline is None:
        return None
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(baseline), os.environ.get("PYTHONPATH")]))}


def _pull_runs(
    registry: Distribution, layout: Path, name: str, runs: int, jobs: int, work: Path, baseline: Path | None
) -> list[Run]:
    image = f"{registry.host}/bench/{name}:1"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{image}"],
        check=True,
        capture_output=True,
    )
    results: list[Run] = []
    for i in range(runs):
        for tool in _tools(baseline):
            dest = work / f"pull-{tool}-{name}-{i}"
            shutil.rmtree(dest, ignore_errors=True)
            if tool != "skopeo":
                argv = [*_regtool(), "pull", "--quiet", "--jobs", str(jobs), image, str(dest)]
            else:
                argv = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}", f"oci:{dest}:bench"]
            run = _timed(argv, _regtool_env(tool, baseline))
            results.append(run._replace_tool(tool))
            shutil.rmtree(dest, ignore_errors=True)
    return results


def _push_runs(layout: Path, name: str, runs: int, jobs: int, work: Path, baseline: Path | None) -> list[Run]:
    results: list[Run] = []
    for i in range(runs):
        for tool in _tools(baseline):
            root = work / f"push-registry-{tool}-{name}-{i}"
            shutil.rmtree(root, ignore_errors=True)
            with run_distribution(root) as registry:
                image = f"{registry.host}/bench/{name}:1"
                if tool != "skopeo":
                    argv = [*_regtool(), "push", "--quiet", "--jobs", str(jobs), f"{layout}:bench", image]
                else:
                    argv = ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{image}"]
                run = _timed(argv, _regtool_env(tool, baseline))
            results.append(run._replace_tool(tool))
            shutil.rmtree(root, ignore_errors=True)
    return results


def _archive(work: Path, layout: Path, name: str) -> Path:
    archive = work / f"src-{name}.tar"
    if not archive.exists():
        print(f"writing docker-archive {archive} ...", flush=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        subprocess.run(
            ["skopeo", "copy", f"oci:{layout}:bench", f"docker-archive:{partial}:bench/{name}:1"],
            check=True,
            capture_output=True,
        )
        partial.rename(archive)
    return archive


def _archive_push_runs(archive: Path, name: str, runs: int, jobs: int, work: Path, baseline: Path | None) -> list[Run]:
    results: list[Run] = []
    for i in range(runs):
        for tool in _tools(baseline):
            root = work / f"push-registry-{tool}-{name}-{i}"
            shutil.rmtree(root, ignore_errors=True)
            with run_distribution(root) as registry:
                image = f"{registry.host}/bench/{name}:1"
                if tool != "skopeo":
                    argv = [*_regtool(), "push", "--quiet", "--jobs", str(jobs), str(archive), image]
                else:
                    argv = [
                        "skopeo",
                        "copy",
                        "--dest-tls-verify=false",
                        f"docker-archive:{archive}",
                        f"docker://{image}",
                    ]
                results.append(_timed(argv, _regtool_env(tool, baseline))._replace_tool(tool))
            shutil.rmtree(root, ignore_errors=True)
    return results


def _archive_pull_runs(
    registry: Distribution, layout: Path, name: str, runs: int, jobs: int, work: Path, baseline: Path | None
) -> list[Run]:
    image = f"{registry.host}/bench/{name}:1"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{image}"],
        check=True,
        capture_output=True,
    )
    results: list[Run] = []
    for i in range(runs):
        for tool in (*_tools(baseline), "layout", "inflate"):
            dest = work / f"pull-{tool}-{name}-{i}" / ("out" if tool == "layout" else "out.tar")
            shutil.rmtree(dest.parent, ignore_errors=True)
            dest.parent.mkdir(parents=True)
            if tool == "inflate":
                argv = [sys.executable, str(ROOT / "benchmarks" / "inflate_alone.py"), str(layout), str(dest)]
            elif tool == "skopeo":
                argv = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{image}", f"docker-archive:{dest}:x:1"]
            else:
                argv = [*_regtool(), "pull", "--quiet", "--jobs", str(jobs), image, str(dest)]
            results.append(_timed(argv, _regtool_env(tool, baseline))._replace_tool(tool))
            shutil.rmtree(dest.parent, ignore_errors=True)
    return results


def _copy_runs(
    registry: Distribution, layout: Path, name: str, runs: int, jobs: int, work: Path, baseline: Path | None
) -> list[Run]:
    source = f"{registry.host}/bench/{name}:1"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench", f"docker://{source}"],
        check=True,
        capture_output=True,
    )
    results: list[Run] = []
    for i in range(runs):
        for tool in _tools(baseline):
            root = work / f"copy-registry-{tool}-{name}-{i}"
            shutil.rmtree(root, ignore_errors=True)
            with run_distribution(root) as target:
                dest = f"{target.host}/bench/{name}:1"
                if tool != "skopeo":
                    argv = [*_regtool(), "copy", "--quiet", "--jobs", str(jobs), source, dest]
                else:
                    argv = [
                        "skopeo",
                        "copy",
                        "--src-tls-verify=false",
                        "--dest-tls-verify=false",
                        f"docker://{source}",
                        f"docker://{dest}",
                    ]
                results.append(_timed(argv, _regtool_env(tool, baseline))._replace_tool(tool))
            shutil.rmtree(root, ignore_errors=True)
    return results


def _present(results: list[Run]) -> list[str]:
    """The contestants of ``results``, in the order they first ran."""
    return list(dict.fromkeys(r.tool for r in results))


def _report(kind: str, name: str, results: list[Run]) -> tuple[float, float]:
    ours = [r for r in results if r.tool == "regtool"]
    theirs = [r for r in results if r.tool == "skopeo"]
    med_ours = statistics.median(r.seconds for r in ours)
    med_theirs = statistics.median(r.seconds for r in theirs)
    rss = max(r.rss_mib for r in ours)
    print(
        f"{kind:4} {name:7} regtool {med_ours:6.2f} s (runs {', '.join(f'{r.seconds:.2f}' for r in ours)})  "
        f"skopeo {med_theirs:6.2f} s (runs {', '.join(f'{r.seconds:.2f}' for r in theirs)})  "
        f"ratio {med_ours / med_theirs:4.2f}  peak RSS regtool {rss:5.1f} MiB, "
        f"skopeo {max(r.rss_mib for r in theirs):5.1f} MiB  "
        f"load {min(r.load for r in results):.2f}-{max(r.load for r in results):.2f}",
        flush=True,
    )
    layout = [r for r in results if r.tool == "layout"]
    if layout:
        med_layout = statistics.median(r.seconds for r in layout)
        print(
            f"{kind:4} {name:7} regtool into a layout {med_layout:5.2f} s "
            f"(runs {', '.join(f'{r.seconds:.2f}' for r in layout)}); archive / layout {med_ours / med_layout:4.2f}",
            flush=True,
        )
        inflate = [r for r in results if r.tool == "inflate"]
        own_cpu = statistics.median(r.cpu_seconds for r in inflate)
        print(
            f"{kind:4} {name:7} archive - layout {med_ours - med_layout:5.2f} s; the decompression alone "
            f"(inflate, diff_id, writing the tar: benchmarks/inflate_alone.py) {own_cpu:.2f} CPU s, "
            f"{statistics.median(r.seconds for r in inflate):.2f} s wall; "
            f"bound {'met' if med_ours - med_layout <= own_cpu else 'NOT met'}",
            flush=True,
        )
    cpu = {tool: statistics.median(r.cpu_seconds for r in results if r.tool == tool) for tool in _present(results)}
    print(f"{kind:4} {name:7} CPU seconds (median) " + ", ".join(f"{t} {c:.2f}" for t, c in cpu.items()), flush=True)
    base = [r for r in results if r.tool == "baseline"]
    if base:
        med_base = statistics.median(r.seconds for r in base)
        print(
            f"{kind:4} {name:7} baseline {med_base:5.2f} s (runs {', '.join(f'{r.seconds:.2f}' for r in base)})  "
            f"ratio {med_base / med_theirs:4.2f}  peak RSS {max(r.rss_mib for r in base):5.1f} MiB",
            flush=True,
        )
    return med_ours / med_theirs, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-bench-skopeo"))
    parser.add_argument("--images", default="16x32,2x512", help="comma-separated COUNTxMIB")
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--baseline", type=Path, help="also time regtool with DIR first on PYTHONPATH, interleaved")
    parser.add_argument("--archive", action="store_true", help="push from and pull into docker-archives instead")
    parser.add_argument("--copy", action="store_true", help="copy registry to registry instead")
    args = parser.parse_args()
    compile_for_runs(*([args.baseline] if args.baseline is not None else []))
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo is not installed")
    args.work.mkdir(parents=True, exist_ok=True)
    skopeo_version = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.split()[-1]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; skopeo {skopeo_version}",
        flush=True,
    )
    specs = [tuple(int(x) for x in spec.split("x")) for spec in args.images.split(",")]
    for count, mib in specs:
        name = f"{count}x{mib}"
        layout = _image(args.work, count, mib)
        if args.copy:
            with run_distribution(args.work / f"registry-{name}") as registry:
                results = _copy_runs(registry, layout, name, args.runs, args.jobs, args.work, args.baseline)
            shutil.rmtree(args.work / f"registry-{name}", ignore_errors=True)
            _report("copy", name, results)
            continue
        if args.archive:
            archive = _archive(args.work, layout, name)
            if not args.skip_pull:
                with run_distribution(args.work / f"registry-{name}") as registry:
                    results = _archive_pull_runs(registry, layout, name, args.runs, args.jobs, args.work, args.baseline)
                shutil.rmtree(args.work / f"registry-{name}", ignore_errors=True)
                _report("pull", f"{name}.tar", results)
            if not args.skip_push:
                _report(
                    "push",
                    f"{name}.tar",
                    _archive_push_runs(archive, name, args.runs, args.jobs, args.work, args.baseline),
                )
            continue
        if not args.skip_pull:
            with run_distribution(args.work / f"registry-{name}") as registry:
                results = _pull_runs(registry, layout, name, args.runs, args.jobs, args.work, args.baseline)
            shutil.rmtree(args.work / f"registry-{name}", ignore_errors=True)
            _report("pull", name, results)
        if not args.skip_push:
            _report("push", name, _push_runs(layout, name, args.runs, args.jobs, args.work, args.baseline))


if __name__ == "__main__":
    main()
