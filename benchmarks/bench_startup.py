"""Start-up cost of collapsebench commands against ``python -c "import torch"``.

    uv run python benchmarks/bench_startup.py --repeats 5 [--eager] [--json FILE]

Every command runs in a fresh process; the commands take turns within each repeat, so that
they share whatever else the machine is doing, and the table gives medians of wall time and
their ratio to the import of torch. ``--eager`` adds the default run with the deferral of
collapsebench/avalanche_imports.py switched off (COLLAPSEBENCH_EAGER_IMPORTS=1).

Goals (issue 13): the default run at most 2.5x the import of torch; --help, list and plugins
at most 0.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"run": 2.5, "--help": 0.3, "list": 0.3, "plugins": 0.3}


def commands(eager: bool) -> dict[str, tuple[list[str], dict[str, str]]]:
    script = shutil.which("collapsebench", path=str(Path(sys.executable).parent))
    cli = [script] if script else [sys.executable, "-m", "collapsebench.cli"]
    table = {
        "import torch": ([sys.executable, "-c", "import torch"], {}),
        "run": ([*cli, "run"], {}),
        "--help": ([*cli, "--help"], {}),
        "list": ([*cli, "list"], {}),
        "plugins": ([*cli, "plugins"], {}),
    }
    if eager:
        table["run (eager imports)"] = ([*cli, "run"], {"COLLAPSEBENCH_EAGER_IMPORTS": "1"})
    return table


def time_once(argv: list[str], env: dict[str, str], scratch: Path) -> float:
    if argv[-1] == "run":
        out = Path(tempfile.mkdtemp(dir=scratch))
        argv = [*argv, "--out", str(out / "run")]
    started = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, cwd=scratch)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eager", action="store_true", help="also time the run without deferred imports")
    parser.add_argument("--json", type=Path, help="write the raw times here")
    args = parser.parse_args()

    table = commands(args.eager)
    times: dict[str, list[float]] = {name: [] for name in table}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (argv, env) in table.items():  # one untimed pass fills the file-system caches
            time_once(argv, env, Path(scratch))
        for _ in range(args.repeats):
            for name, (argv, env) in table.items():
                times[name].append(time_once(argv, env, Path(scratch)))

    torch_s = statistics.median(times["import torch"])
    print(f"{os.cpu_count()} CPUs, {args.repeats} interleaved repeats, median wall time\n")
    print("| command | median s | x import torch | goal |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal}x: {'met' if median / torch_s <= goal else 'not met'}"
        print(f"| `{name}` | {median:.2f} | {median / torch_s:.2f} | {verdict} |")
    if args.json:
        args.json.write_text(json.dumps(times, indent=2))


if __name__ == "__main__":
    main()
