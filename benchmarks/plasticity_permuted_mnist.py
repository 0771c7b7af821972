"""Loss of plasticity on permuted MNIST, and whether each plasticity strategy keeps it.

Everything trains through the product: the strategies run as a ``collapsebench sweep`` of the
``permuted-mnist-sample-mlp`` track (100 permutations of 4,000 images of the shared MNIST sample,
an MLP 100-100, SGD lr 0.03 with momentum 0.9, minibatches of 16, ``current`` evaluation: only
the newest task is tested after each). Two references leave the track's protocol and so run as
plain ``collapsebench run``s with the track's settings and one change each:

- ``fresh``: naive SGD with the ``plasticity`` evaluator, which trains a freshly initialized
  network on every task alone with the same budget (the denominator of SPEC's plasticity);
- ``naive_lr0.01``: naive SGD at a third of the learning rate.

Per variant and seed it reads ``results.json``: the accuracy on each task right after training
on it (R[i][i]), the online accuracy where the runner recorded it, and the collapse series.
It prints a Markdown table for docs/strategies.md, draws the report's plasticity-over-tasks
figure into docs/img/, and keeps the table's numbers in benchmarks/plasticity_permuted_mnist.json.

    uv run python benchmarks/plasticity_permuted_mnist.py --dry-run      # the commands, nothing run
    uv run python benchmarks/plasticity_permuted_mnist.py --workers 2    # run what is missing, then tables
    uv run python benchmarks/plasticity_permuted_mnist.py --variants naive cbp --seeds 0
    uv run python benchmarks/plasticity_permuted_mnist.py --table-only   # from the run directories

Run directories go under ``--out`` (default runs/plasticity/<variant>); a sweep skips finished
jobs and a finished reference run is not repeated, so an interrupted benchmark continues. Data:
``$COLLAPSEBENCH_DATA_ROOT`` (default ``../shared/data``), holding MNIST/raw/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRACK = "permuted-mnist-sample-mlp"
RESULTS = REPO / "benchmarks" / "plasticity_permuted_mnist.json"
IMAGES = REPO / "docs" / "img"
SEEDS = [0, 1, 2]
#: Share of the tasks at each end of the stream whose new-task accuracies are compared (SPEC).
WINDOW = 0.1

# A strategy with option values for this scale (anything not named keeps the strategy's documented
# default), or a reference: ``run`` holds the config keys it changes against the track's protocol.
VARIANTS = {
    "naive": {"strategy": "naive", "options": {}},
    "l2": {"strategy": "l2", "options": {"weight_decay": 1e-3}},
    "shrink_perturb": {"strategy": "shrink_perturb", "options": {"weight_decay": 1e-3, "noise_std": 1e-4}},
    # Dohare's rho = 1e-4 is per example (batch size 1); a step here sees 16 examples.
    "cbp": {"strategy": "cbp", "options": {"replacement_rate": 1e-3, "maturity_threshold": 100}},
    "cbp_rate1e-2": {"strategy": "cbp", "options": {"replacement_rate": 1e-2, "maturity_threshold": 100}},
    "er_l2": {"strategy": "er_l2", "options": {}},
    "l2_init": {"strategy": "l2_init", "options": {"coefficient": 1e-3}},
    # once per task of 250 steps, scored on the last 256 training inputs rather than 16
    "redo": {"strategy": "redo", "options": {"every_n_steps": 250, "score_batches": 16}},
    "fresh": {"strategy": "naive", "options": {}, "run": {"evaluators": ["weights", "activations", "plasticity"]}},
    "naive_lr0.01": {"strategy": "naive", "options": {}, "run": {"lr": 0.01}},
}


def data_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))


def collapsebench() -> list[str]:
    """The installed ``collapsebench`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "collapsebench"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from collapsebench.cli import main; sys.exit(main())"]


def track_protocol() -> dict:
    from collapsebench.manager import build_manager
    from collapsebench.tracks import get_track

    return dict(get_track(build_manager(), TRACK).config)


def option_flags(flag: str, options: dict, prefix: str = "") -> list[str]:
    """``--<kind>-option [NAME.]KEY=VALUE`` per option; values as TOML literals (JSON's agree here)."""
    return [part for key, value in options.items() for part in (flag, f"{prefix}{key}={json.dumps(value)}")]


def run_flags(config: dict) -> list[str]:
    """The flags of ``collapsebench run`` that set ``config``'s keys."""
    flags = []
    for key, value in config.items():
        if key in ("stream_options", "model_options"):
            flags += option_flags(f"--{key.removesuffix('_options')}-option", value)
        elif key == "evaluator_options":
            for name, options in value.items():
                flags += option_flags("--evaluator-option", options, f"{name}.")
        elif key == "evaluators":
            flags += ["--evaluators", ",".join(value)]
        else:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def variant_dir(out: Path, name: str) -> Path:
    return out / name


def run_dirs(out: Path, name: str, seeds) -> list[Path]:
    """Where a variant's runs are: a sweep's OUT/TRACK/STRATEGY/seedN, or a reference's seedN."""
    variant = VARIANTS[name]
    base = variant_dir(out, name)
    if "run" in variant:
        return [base / f"seed{seed}" for seed in seeds]
    return [base / TRACK / variant["strategy"] / f"seed{seed}" for seed in seeds]


def commands(name: str, seeds, out: Path, workers: int | None) -> list[list[str]]:
    """The collapsebench commands that run a variant (each skips or resumes what is done)."""
    variant = VARIANTS[name]
    common = ["--data-root", str(data_root())]
    if "run" not in variant:
        command = [*collapsebench(), "sweep", "--track", TRACK, "--strategies", variant["strategy"],
                   "--seeds", ",".join(map(str, seeds)), "--out", str(variant_dir(out, name)), *common,
                   *option_flags("--strategy-option", variant["options"], f"{variant['strategy']}.")]
        return [command + (["--workers", str(workers)] if workers else [])]
    config = {**track_protocol(), **variant["run"]}
    result = []
    for seed, run_dir in zip(seeds, run_dirs(out, name, [*seeds])):
        if complete(run_dir):
            continue
        result.append([*collapsebench(), "run", *run_flags(config), "--strategy", variant["strategy"],
                       *option_flags("--strategy-option", variant["options"]),
                       "--seed", str(seed), "--out", str(run_dir), *common])
    return result


def complete(run_dir: Path) -> bool:
    path = run_dir / "results.json"
    try:
        return json.loads(path.read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


# --- reading the runs -----------------------------------------------------------------------


def window_mean(values: list[float], first: bool) -> float:
    k = max(1, round(WINDOW * len(values)))
    chosen = values[:k] if first else values[-k:]
    return statistics.fmean(chosen)


def read_run(run_dir: Path) -> dict:
    """What the table needs from one finished run."""
    from collapsebench.report.runs import Run, new_task_accuracy, online_accuracy

    result = json.loads((run_dir / "results.json").read_text())
    run = Run(run_dir, result)
    tested = new_task_accuracy(run)
    accuracy = [tested[i] for i in sorted(tested)]
    fresh = run.by_experience("fresh_accuracy", "model", "all")
    online = online_accuracy(run)
    summary = run.summary
    return {
        "run_dir": str(run_dir.relative_to(REPO) if run_dir.is_relative_to(REPO) else run_dir),
        "seed": run.seed,
        "new_task_accuracy": accuracy,
        "online_accuracy": [online[i] for i in sorted(online)],
        "fresh_accuracy": [fresh[i] for i in sorted(fresh)],
        "first": window_mean(accuracy, True),
        "last": window_mean(accuracy, False),
        "plasticity_retention": window_mean(accuracy, False) / window_mean(accuracy, True),
        "capacity_retention": summary.get("capacity_retention"),
        "dead_units": summary.get("dead_units"),
        "seconds": (result.get("timing") or {}).get("total"),
        "fingerprint": (result.get("stream") or {}).get("fingerprint"),
    }


def collect(out: Path, variants, seeds) -> dict:
    collected = {}
    for name in variants:
        runs = [read_run(d) for d in run_dirs(out, name, seeds) if complete(d)]
        if runs:
            collected[name] = {"spec": VARIANTS[name], "runs": runs}
    return {"format": 2, "track": TRACK, "window": WINDOW, "variants": collected}


def over_seeds(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def table(results: dict) -> str:
    """One row per variant: mean ± sd over seeds of what the plasticity board ranks, and more."""
    rows = ["| variant | seeds | new-task accuracy, first 10% | last 10% | plasticity retention | "
            "capacity retention | dead units (end) | s per run |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in results["variants"].items():
        runs = entry["runs"]
        seconds = [r["seconds"] for r in runs if r["seconds"] is not None]
        cells = [over_seeds([r[key] for r in runs])
                 for key in ("first", "last", "plasticity_retention", "capacity_retention", "dead_units")]
        took = f"{statistics.fmean(seconds):.0f}" if seconds else "-"
        rows.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {took} |")
    fresh = results["variants"].get("fresh")
    if fresh and all(r["fresh_accuracy"] for r in fresh["runs"]):
        last = [window_mean(r["fresh_accuracy"], False) for r in fresh["runs"]]
        rows.append(f"\nA fresh network per task reaches {over_seeds(last)} on the last 10% of tasks "
                    "(the plasticity evaluator's fresh_accuracy).")
    return "\n".join(rows)


def plot(out: Path, variants, seeds, images: Path) -> Path | None:
    """The report's plasticity-over-tasks figure, one colour per variant."""
    from collapsebench.report.figures import MissingData, plasticity_over_tasks
    from collapsebench.report.runs import Run
    from collapsebench.results import read_results

    runs = [Run(d, read_results(d), label=name) for name in variants for d in run_dirs(out, name, seeds) if complete(d)]
    if not runs:
        return None
    try:
        figure = plasticity_over_tasks(runs)
    except MissingData as why:
        print(f"not drawn: {why}")
        return None
    images.mkdir(parents=True, exist_ok=True)
    path = images / "plasticity_permuted_mnist.png"
    figure.savefig(path, dpi=100)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "plasticity", help="where the run directories go")
    parser.add_argument("--workers", type=int, help="the sweeps' worker processes (default: the sweep's own)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    parser.add_argument("--table-only", action="store_true", help="only the table and the figure, from --out")
    args = parser.parse_args(argv)
    if not args.table_only:
        for name in args.variants:
            for command in commands(name, args.seeds, args.out, args.workers):
                print("$ " + shlex.join(command), flush=True)
                if not args.dry_run and subprocess.call(command) != 0:
                    print(f"{name}: the command failed; the runs that finished are kept, and rerunning continues",
                          file=sys.stderr)
        if args.dry_run:
            return 0
    results = collect(args.out, args.variants, args.seeds)
    if not results["variants"]:
        print(f"No finished runs under {args.out}.", file=sys.stderr)
        return 1
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    path = plot(args.out, args.variants, args.seeds, args.images)
    if path:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
