"""Two regtool source trees against each other (and skopeo), interleaved, through the latency proxy of ``wan.py``.

    git archive BEFORE regtool | tar -x -C /tmp/before      # and the same for the other tree, or use the work tree
    python benchmarks/wan_versions.py --before /tmp/before --after /tmp/after [--runs 15] [--delay-ms 50]
                                      [--images 16x1M,64x256K] [--commands pull,inspect,tags,loopback]

A change worth one round trip (50 ms at the issue's delay) hides in the noise of two separate ``wan.py`` runs on a
shared machine: their wall times drift by more than that with the load. Here every round runs each contestant once,
in rotating order, against the same docker-registry 2.8.2, each through a fresh ``benchmarks/latency_proxy.py``
(``wan.py``'s helpers: registry, seeding, proxy, timing); the report gives medians, the ratio to skopeo, and the
median of the per-round differences after - before, which the load's drift does not reach.

``regtool`` runs as the venv's console script with ``PYTHONPATH`` set to the tree (the script's directory comes
first on ``sys.path``, so the tree wins over the editable install; ``python -m`` would put the working directory
first instead). A tree from before the console script became ``regtool.console:main`` needs a one-line
``regtool/console.py`` (``from regtool.cli import main``).

``--commands``: ``pull`` (into a fresh OCI layout; skopeo copies into one), ``inspect`` and ``tags`` (skopeo
``inspect --no-tags`` and ``list-tags``) through the proxy, and ``loopback``: ``regtool tags`` straight to the
registry, before against after, for what the start-up costs (wall and CPU seconds). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wan

from tests.support.distribution import Distribution, run_distribution  # wan put the repository on the path

COMMANDS = ("pull", "inspect", "tags", "loopback")
REPOSITORY = "bench/versions"


def _argv(contestant: str, command: str, host: str, dest: Path) -> list[str]:
    ref = f"{host}/{REPOSITORY}:1"
    if contestant == "skopeo":
        return {
            "pull": ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:{wan.TAG}"],
            "inspect": ["skopeo", "inspect", "--no-tags", "--tls-verify=false", f"docker://{ref}"],
            "tags": ["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{REPOSITORY}"],
        }[command]
    return {
        "pull": [*wan._regtool(), "pull", "--quiet", ref, str(dest)],
        "inspect": [*wan._regtool(), "inspect", ref],
        "tags": [*wan._regtool(), "tags", f"{host}/{REPOSITORY}"],
        "loopback": [*wan._regtool(), "tags", f"{host}/{REPOSITORY}"],
    }[command]


def _timed_with(pythonpath: str | None, contestant: str, argv: Sequence[str]) -> wan.Run:
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        return wan._timed(contestant, argv)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def series(
    command: str, registry: Distribution, trees: dict[str, str], layout: Path, work: Path, runs: int, delay: float
) -> dict[str, list[wan.Run]]:
    contestants = [*trees, "skopeo"] if command != "loopback" else list(trees)
    results: dict[str, list[wan.Run]] = {name: [] for name in contestants}
    for i in range(runs):
        for contestant in wan._rotate(contestants, i):
            dest = work / f"versions-{contestant}"
            shutil.rmtree(dest, ignore_errors=True)
            pythonpath = trees.get(contestant)
            if command == "loopback":
                run = _timed_with(pythonpath, contestant, _argv(contestant, command, registry.host, dest))
            else:
                with wan.latency_proxy(registry.port, delay, work / "proxy-logs") as proxy:
                    run = _timed_with(pythonpath, contestant, _argv(contestant, command, proxy.host, dest))
                run = wan.Run(run.tool, run.seconds, run.rss_mib, run.load, None, proxy.connections(), run.cpu_seconds)
            if command == "pull":
                wan._check_pulled(layout, dest, contestant)
            shutil.rmtree(dest, ignore_errors=True)
            results[contestant].append(run)
            print(f"{command} {i + 1}/{runs} {contestant:7} {run.seconds:.3f} s load {run.load:.2f}", flush=True)
    return results


def report(label: str, results: dict[str, list[wan.Run]]) -> list[str]:
    median = {name: wan._median(runs) for name, runs in results.items()}
    cpu = {name: statistics.median(r.cpu_seconds or 0.0 for r in runs) for name, runs in results.items()}
    loads = [r.load for runs in results.values() for r in runs]
    lines = [f"#### {label} (load {min(loads):.2f}-{max(loads):.2f})", ""]
    lines += ["| | median | CPU s | / skopeo | connections | samples |", "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        ratio = f"**{median[name] / median['skopeo']:.2f}**" if "skopeo" in median else ""
        connections = wan._counts(runs, "connections") if runs[0].connections is not None else ""
        lines.append(
            f"| {name} | {median[name]:.3f} s | {cpu[name]:.3f} | {ratio} | {connections} | {wan._samples(runs)} |"
        )
    before, after = results["before"], results["after"]
    wall = [a.seconds - b.seconds for a, b in zip(after, before, strict=True)]
    cpu_diff = [(a.cpu_seconds or 0.0) - (b.cpu_seconds or 0.0) for a, b in zip(after, before, strict=True)]
    faster = sum(d < 0 for d in wall)
    lines += [
        "",
        f"after / before {median['after'] / median['before']:.2f}; per round after - before: wall "
        f"{statistics.median(wall) * 1000:+.0f} ms (median; after faster in {faster} of {len(wall)} rounds), "
        f"CPU {statistics.median(cpu_diff) * 1000:+.1f} ms",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a tree holding regtool/ (PYTHONPATH)")
    parser.add_argument("--after", type=Path, required=True, help="a tree holding regtool/ (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--images", default="16x1M", help="pulls: comma-separated COUNTxSIZE (the first serves all)")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated: {','.join(COMMANDS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/regtool-bench-wan"))
    args = parser.parse_args()
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    if set(commands) - set(COMMANDS) or args.runs < 1:
        parser.error(f"--commands from {', '.join(COMMANDS)}; --runs at least 1")
    trees = {"before": str(args.before.resolve()), "after": str(args.after.resolve())}
    for tree in trees.values():
        if not (Path(tree) / "regtool" / "__init__.py").is_file():
            parser.error(f"{tree} holds no regtool/")
        compileall.compile_dir(str(Path(tree) / "regtool"), quiet=1)  # as installed: no compiling at start-up
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    out = [f"{wan._now()}: delay {args.delay_ms:g} ms, {args.runs} rounds"]
    out += [f"before {trees['before']}, after {trees['after']}", ""]
    for spec in args.images.split(","):
        image = wan.parse_image(spec)
        layout = wan._layout(work, image)
        root = work / f"registry-versions-{image.name}"
        shutil.rmtree(root, ignore_errors=True)
        with run_distribution(root, quiet=False) as registry:
            wan._seed(layout, f"{registry.host}/{REPOSITORY}:1")
            for command in commands:
                if command != "pull" and spec != args.images.split(",")[0]:
                    continue  # one-shot commands once, on the first image
                results = series(command, registry, trees, layout, work, args.runs, args.delay_ms)
                where = "on loopback" if command == "loopback" else f"at +{args.delay_ms:g} ms"
                out += report(f"{command} {where}" + (f", {image.label}" if command == "pull" else ""), results)
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work / "proxy-logs", ignore_errors=True)
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
