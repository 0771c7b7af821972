"""Cost of a long stream through the product: is the work per experience flat in the number of tasks?

Permuted MNIST from the shared sample, an MLP 784-100-100, 4,000 training and 500 test images per
task (the CPU plasticity track's workload; ``--train-subset 500`` is the smaller example of the
long-streams issue), SGD (lr 0.03, momentum 0.9, minibatches of 16, one pass), ``current``
evaluation, checkpointing on as in every real run. Each stream length runs as ``collapsebench.runner.execute`` (what ``collapsebench
run`` calls) in a process of its own, so that its peak memory is its own. Per length it reports the
time per experience (mean, and median over the first and the last 10% of the experiences, from the
runner's own progress lines), the peak resident memory and its growth over the process after the
imports, the size of results.json, and the share of the loop that is not training (evaluation,
evaluators, data gathering, checkpoints, figures), next to the floor: what any implementation of
the protocol does besides training (gathering the images, one test forward pass), measured in
the same process.

    uv run --locked python benchmarks/bench_long_stream.py --clock cpu        # T = 50, 200, 800
    uv run --locked python benchmarks/bench_long_stream.py --clock cpu --train-subset 500
    uv run --locked python benchmarks/bench_long_stream.py --tasks 50 200 --evaluators weights,activations
    uv run --locked python benchmarks/bench_long_stream.py --checkpoint-seconds 2
    uv run --locked python benchmarks/bench_long_stream.py --checkpoint-seconds 2 --clock cpu

``--clock cpu`` makes every timer of the run (the runner's phases, the progress lines, the
checkpoint cadence) read the process's CPU time instead of wall time: on a machine shared with
other jobs, wall-clock shares move with the load, CPU shares much less (torch runs one thread).

Prints a Markdown table (docs/performance.md) and writes benchmarks/bench_long_stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))


def child(tasks: int, evaluators: list[str], out: Path, test_subset: int, checkpoint_every: int,
          checkpoint_seconds: float, clock: str = "wall", train_subset: int = 4000) -> dict:
    if clock == "cpu":
        # Every timer of the run reads time.perf_counter through the time module: one switch covers them all.
        time.perf_counter = time.process_time
    from collapsebench.config import build_config
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry
    from collapsebench.runner import execute

    config = build_config({
        "stream": "permuted-mnist", "model": "mlp", "strategy": "naive", "evaluators": evaluators,
        "evaluation": "current", "epochs": 1, "batch_size": 16, "lr": 0.03, "momentum": 0.9,
        "data_root": str(DATA), "out": str(out), "probe_size": 500, "checkpoint_every": checkpoint_every,
        "checkpoint_seconds": checkpoint_seconds,
        "stream_options": {"n_experiences": tasks, "train_subset": train_subset, "test_subset": test_subset},
        "model_options": {"widths": [100, 100]},
    })
    manager = build_manager([])
    registry = Registry(manager)
    starts: list[float] = []

    def echo(line: str = "", **kwargs) -> None:
        if str(line).startswith("experience "):
            starts.append(time.perf_counter())

    from collapsebench import checkpoint

    written = []
    real_save = checkpoint.save
    checkpoint.save = lambda strategy, run_dir, progress: written.append(1) or real_save(strategy, run_dir, progress)
    rss_before = _rss_mb()  # torch, Avalanche and the plugins imported
    result = execute(config, manager, registry, echo=echo)
    ended = time.perf_counter()
    peak_rss = _rss_mb()  # before the floor below builds a stream of its own
    floor = work_floor(config, manager, registry)
    per_experience = [b - a for a, b in zip(starts, [*starts[1:], ended])]
    tenth = max(1, tasks // 10)
    timing = result["timing"]
    loop = timing["total"] - timing["build"]
    return {
        "tasks": tasks,
        "evaluators": evaluators,
        "checkpoint_every": checkpoint_every,
        "checkpoint_seconds": checkpoint_seconds,
        "clock": clock,
        "checkpoints_written": len(written),
        "seconds_per_experience": loop / tasks,
        "median_all": statistics.median(per_experience),
        "median_first_tenth": statistics.median(per_experience[:tenth]),
        "median_last_tenth": statistics.median(per_experience[-tenth:]),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss,
        "results_json_mb": (out / "results.json").stat().st_size / 2**20,
        "train_subset": train_subset,
        "test_subset": test_subset,
        "non_training_share": 1 - timing["train"] / loop,
        # What any implementation of this protocol does per experience besides training (below),
        # times the number of experiences, as a share of the loop.
        "floor_seconds_per_experience": floor,
        "floor_share": floor * tasks / loop,
        "timing": timing,
        "new_task_accuracy_first_last": [result["summary"]["new_task_accuracy"][0],
                                         result["summary"]["new_task_accuracy"][-1]],
    }


def work_floor(config, manager, registry, samples: int = 20) -> float:
    """Seconds per experience of the work that is not training and that no implementation can skip.

    Per experience: gathering its training and its test images into tensors (the stream's bulk
    path, one indexing operation each), and the test forward pass in one batch without gradients,
    with its loss and its accuracy read back. Median over ``samples`` experiences of a freshly
    built stream, through a fresh model of the run's architecture (the same cost); the rest of the non-training share is the
    framework's (Avalanche's evaluation loop, metrics, loggers, checkpoints, bookkeeping).
    """
    from collapsebench import fastdata
    from collapsebench.config import resolve_component_options
    from collapsebench.runner import build_model, build_stream

    options = resolve_component_options(config, registry)
    stream = build_stream(config, registry, options["stream"][config.stream])
    model = build_model(config, registry, stream, options["model"][config.model])
    criterion = torch.nn.CrossEntropyLoss()
    pairs = list(zip(stream.benchmark.train_stream, stream.benchmark.test_stream))
    seconds = []
    for train, test in pairs[-samples:]:
        tick = time.perf_counter()
        fastdata.gather(train.dataset.train())
        x, y, _ = fastdata.gather(test.dataset.eval())
        model.eval()
        with torch.no_grad():
            output = model(x)
            loss, correct = criterion(output, y), (output.argmax(1) == y).sum()
            float(loss), int(correct)
        model.train()
        seconds.append(time.perf_counter() - tick)
    return statistics.median(seconds)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def table(rows: list[dict]) -> str:
    lines = [
        "| T | s / experience (mean) | median | median, first 10% | median, last 10% | peak RSS (MB) | growth after imports (MB) "
        "| results.json (MB) | non-training share | floor | beyond the floor | evaluation | evaluators | data | checkpoint | checkpoints |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t, loop = r["timing"], r["timing"]["total"] - r["timing"]["build"]
        share = {k: t.get(k, 0.0) / loop for k in ("evaluate", "evaluators", "data", "checkpoint")}
        lines.append(
            f"| {r['tasks']} | {r['seconds_per_experience']:.3f} | {r['median_all']:.3f} | {r['median_first_tenth']:.3f} | "
            f"{r['median_last_tenth']:.3f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:.0f} | "
            f"{r['results_json_mb']:.2f} | {r['non_training_share']:.1%} | {r['floor_share']:.1%} | "
            f"{r['non_training_share'] - r['floor_share']:.1%} | {share['evaluate']:.1%} | "
            f"{share['evaluators']:.1%} | {share['data']:.1%} | {share['checkpoint']:.1%} | {r.get('checkpoints_written', '')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--evaluators", default="", help="comma-separated evaluators (default: none)")
    parser.add_argument("--train-subset", type=int, default=4000,
                        help="training images per task (default: the CPU plasticity track's 4000)")
    parser.add_argument("--test-subset", type=int, default=500, help="test images per task")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="the runner's checkpoint_every")
    parser.add_argument("--checkpoint-seconds", type=float, default=0.0, help="the runner's checkpoint_seconds")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the run by wall time or by the process's CPU time")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "bench_long_stream.json"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    evaluators = [e for e in args.evaluators.split(",") if e]
    if args.child:
        print(json.dumps(child(args.child, evaluators, Path(args.out), args.test_subset, args.checkpoint_every,
                                args.checkpoint_seconds, args.clock, args.train_subset)))
        return 0
    if not (DATA / "MNIST" / "raw").exists():
        print(f"No MNIST under {DATA} (set COLLAPSEBENCH_DATA_ROOT).", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for tasks in args.tasks:
            process = subprocess.run(
                [sys.executable, __file__, "--child", str(tasks), "--evaluators", args.evaluators,
                 "--train-subset", str(args.train_subset), "--test-subset", str(args.test_subset), "--checkpoint-every", str(args.checkpoint_every),
                 "--checkpoint-seconds", str(args.checkpoint_seconds), "--clock", args.clock,
                 "--out", str(Path(scratch) / f"T{tasks}")],
                cwd=REPO, capture_output=True, text=True,
            )
            if process.returncode != 0:
                print(process.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(process.stdout.strip().splitlines()[-1]))
            print(f"T={tasks}: {rows[-1]['seconds_per_experience']:.3f} s per experience", file=sys.stderr, flush=True)
    previous = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
    previous[f"evaluators={','.join(evaluators) or 'none'} checkpoint_every={args.checkpoint_every}"
             + (f" checkpoint_seconds={args.checkpoint_seconds:g}" if args.checkpoint_seconds else "")
             + (" clock=cpu" if args.clock == "cpu" else "")
             + (f" train_subset={args.train_subset}" if args.train_subset != 500 else "")] = rows
    Path(args.json).write_text(json.dumps(previous, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
