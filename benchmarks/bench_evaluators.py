"""What the evaluators cost: overhead on a real run, growth with width and probe size, and threads.

1. **Overhead.** The split-mnist-mlp protocol (task-incremental split MNIST, MLP 784-256-256,
   5 epochs, batch 32, probe set of 1,000) through ``collapsebench.runner.execute``, with no
   evaluators, the default ones (weights, activations), and each costly one alone. Runs are
   interleaved so that they share the machine's noise; medians over repeats. The cost of a
   configuration is its training time plus its evaluators' time (measurements are timed apart
   from training by the runner; what Avalanche's loggers then do, e.g. writing histograms, stays
   in training time), compared with the training time of the run without evaluators.
2. **Scaling.** Each evaluator's ``measure`` alone, on an MLP of two hidden layers of width w,
   at the end of an experience (CKA with four earlier experiences to compare), with probe sets
   drawn from MNIST's test images: cost against w at 1,000 probe inputs, and against the
   probe size at w = 256 (the Hessian's batch is its own option: against that batch instead).
3. **Threads.** ``svdvals`` on the matrices the default run measures, on torch's default threads
   against one thread, and the Gram-matrix path the evaluators use.

Needs the MNIST files under --data-root (default: ../shared/data next to the checkout; the shared
10,000-digit sample, not full MNIST). The machine may be shared: timings are noisy, hence medians.

    uv run python benchmarks/bench_evaluators.py                 # about 4-6 minutes on 2 busy cores
    uv run python benchmarks/bench_evaluators.py --quick         # a smoke test, under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = {"stream": "split-mnist", "scenario": "task", "model": "mlp", "strategy": "naive", "epochs": 5,
            "batch_size": 32, "lr": 0.01, "momentum": 0.9, "probe_size": 1000, "checkpoint": False}
CONFIGURATIONS = {
    "none": [],
    "default (weights, activations)": ["weights", "activations"],
    "cka": ["cka"],
    "hessian": ["hessian"],
    "plasticity": ["plasticity"],
}


def run_once(manager, registry, data_root, evaluators, seed, threads, epochs) -> dict:
    from collapsebench.config import build_config
    from collapsebench.runner import execute

    with tempfile.TemporaryDirectory() as out:
        config = build_config({**PROTOCOL, "evaluators": evaluators, "seed": seed, "data_root": str(data_root),
                               "out": out, "threads": threads, "epochs": epochs})
        timing = execute(config, manager, registry, echo=lambda *a, **k: None)["timing"]
    return {"train": timing["train"], "evaluators": timing["evaluators"]}


def overhead(manager, registry, args) -> list[dict]:
    times = {name: [] for name in CONFIGURATIONS}
    for repeat in range(args.repeats):
        for name, evaluators in CONFIGURATIONS.items():
            if repeat >= args.costly_repeats and name not in ("none", "default (weights, activations)"):
                continue
            if args.only and name != "none" and not any(name.startswith(o) for o in args.only):
                continue
            times[name].append(run_once(manager, registry, args.data_root, evaluators, repeat, args.threads, args.epochs))
            print(f"  repeat {repeat + 1}: {name}: train {times[name][-1]['train']:.2f} s, "
                  f"evaluators {times[name][-1]['evaluators']:.2f} s", flush=True)
    base = statistics.median(t["train"] for t in times["none"])
    rows = []
    for name, runs in times.items():
        if not runs:
            continue
        # each run against the run without evaluators of the same repeat (same seed, nearby in time)
        paired = [(r["train"] + r["evaluators"]) / none["train"] - 1 for r, none in zip(runs, times["none"])]
        train = statistics.median(r["train"] for r in runs)
        measured = statistics.median(r["evaluators"] for r in runs)
        total = statistics.median(r["train"] + r["evaluators"] for r in runs)
        rows.append({"evaluators": name, "repeats": len(runs), "train_s": train, "evaluators_s": measured,
                     "train_plus_evaluators_s": total, "evaluators_over_base_train": measured / base,
                     "overhead": total / base - 1, "paired_overhead_median": statistics.median(paired),
                     "paired_overhead_range": [min(paired), max(paired)]})
    return rows


def mnist_probe(data_root, size: int):
    """A probe set of MNIST test images, experiences = digit pairs, as the split-mnist stream pairs them."""
    from torchvision.datasets import MNIST

    from collapsebench.probe import ProbeSet

    test = MNIST(root=str(data_root), train=False, download=False)
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(test.targets), generator=generator)[:size]
    inputs = ((test.data[chosen].float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    targets = test.targets[chosen]
    return ProbeSet(inputs=inputs, targets=targets, task_labels=torch.zeros(len(chosen), dtype=torch.long),
                    experiences=targets // 2, indices=chosen)


def measure_cost(registry, evaluator: str, width: int, probe, repeats: int, hessian_batch: int = 256) -> float:
    """Median seconds of one ``measure`` call of ``evaluator`` at the end of experience 4."""
    from collapsebench.evaluation import Recorder

    torch.manual_seed(0)
    model = registry.get("architecture", "mlp").factory((1, 28, 28), 10, False, widths=[width, width], activation="relu")
    context = SimpleNamespace(probe=probe, recorder=Recorder(), config=None)
    # the Hessian's batch from the whole probe set, so that it has exactly hessian_batch inputs
    options = {"hessian": {"batch_size": hessian_batch, "inputs": "all"}}.get(evaluator, {})
    (metric,) = registry.get("evaluator", evaluator).factory(context, **{
        **registry.get("evaluator", evaluator).option_defaults(), **options})
    strategy = SimpleNamespace(model=model, device="cpu", _criterion=torch.nn.CrossEntropyLoss(),
                               experience=SimpleNamespace(current_experience=0),
                               clock=SimpleNamespace(train_iterations=0, train_exp_iterations=0))
    if evaluator == "cka":  # four earlier experiences to compare with, as after the last of five
        for experience in range(4):
            strategy.experience.current_experience = experience
            strategy.clock.train_iterations += 1
            list(metric.measure(strategy, "end"))
    strategy.experience.current_experience = 4
    seconds = []
    for _ in range(repeats):
        strategy.clock.train_iterations += 1  # a new moment: no cached activations
        started = time.perf_counter()
        list(metric.measure(strategy, "end"))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def scaling(registry, args) -> dict:
    widths = [64, 256, 1024] if args.quick else [64, 128, 256, 512, 1024]
    sizes = [250, 1000] if args.quick else [250, 500, 1000, 2000]
    batches = [64, 256] if args.quick else [64, 128, 256, 512]
    evaluators = ["weights", "activations", "cka", "hessian"]
    repeats = 1 if args.quick else 3
    probe = mnist_probe(args.data_root, 1000)
    by_width = {e: {w: measure_cost(registry, e, w, probe, 1 if e == "hessian" else repeats) for w in widths}
                for e in evaluators}
    print("  by width done", flush=True)
    by_size = {}
    for size in sizes:
        sized = mnist_probe(args.data_root, size)
        for e in ("weights", "activations", "cka"):
            by_size.setdefault(e, {})[size] = measure_cost(registry, e, 256, sized, repeats)
    largest = mnist_probe(args.data_root, max(batches))
    by_size["hessian (its batch)"] = {b: measure_cost(registry, "hessian", 256, largest, 1, hessian_batch=b)
                                      for b in batches}
    return {"by_width": by_width, "by_probe_size": by_size}


def threads(args) -> list[dict]:
    from collapsebench.metrics import singular_values as svdvals
    from collapsebench_plugins.evaluators.common import singular_values as gram

    generator = torch.Generator().manual_seed(0)
    shapes = [(256, 784), (256, 256), (1000, 256), (200, 256)]
    many = os.cpu_count() or 1
    rows = []
    for shape in shapes:
        matrix = torch.randn(*shape, generator=generator)
        row = {"shape": f"{shape[0]} x {shape[1]}"}
        for label, count, function in ((f"svdvals, {many} threads", many, svdvals),
                                       ("svdvals, 1 thread", 1, svdvals), ("Gram path, 1 thread", 1, gram)):
            torch.set_num_threads(count)
            function(matrix)
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                function(matrix)
                seconds.append(time.perf_counter() - started)
            row[label] = statistics.median(seconds) * 1e3
        rows.append(row)
    torch.set_num_threads(args.threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of 'none' and the default evaluators")
    parser.add_argument("--costly-repeats", type=int, default=2, help="runs of cka, hessian and plasticity")
    parser.add_argument("--epochs", type=int, default=PROTOCOL["epochs"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the runs (the run default: 1)")
    parser.add_argument("--data-root", default=os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer sizes")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--skip", nargs="*", default=[], choices=["overhead", "scaling", "threads"])
    parser.add_argument("--only", nargs="*", default=[], help="overhead of these configurations only (and none)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.costly_repeats, args.epochs = 1, 1, 1
    from tabulate import tabulate

    import avalanche  # noqa: F401  (its import, about 13 s, stays out of every timing)

    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    figures = {"threads_of_runs": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__}
    manager = build_manager()
    registry = Registry(manager)
    if "overhead" not in args.skip:
        print("1. overhead on split MNIST (shared sample), MLP 784-256-256, task-incremental", flush=True)
        figures["overhead"] = overhead(manager, registry, args)
        print(tabulate([[r["evaluators"], r["repeats"], r["train_s"], r["evaluators_s"], r["train_plus_evaluators_s"],
                         100 * r["evaluators_over_base_train"], 100 * r["overhead"], 100 * r["paired_overhead_median"],
                         "{:.0f} to {:.0f}".format(*(100 * v for v in r["paired_overhead_range"]))]
                        for r in figures["overhead"]],
                       headers=["evaluators", "runs", "train s", "evaluators s", "train + evaluators s",
                                "evaluators / train %", "overhead %", "paired overhead %", "paired range %"],
                       floatfmt=".2f"))
    torch.set_num_threads(args.threads)
    if "scaling" not in args.skip:
        print("\n2. one measurement, milliseconds (median)", flush=True)
        figures["scaling"] = scaling(registry, args)
        for axis, table in figures["scaling"].items():
            for evaluator, costs in table.items():
                print(f"\n{evaluator}, by {axis.removeprefix('by_')}" + ("" if "batch" not in evaluator else " (batch)"))
                print(tabulate([[1e3 * c for c in costs.values()]], headers=list(map(str, costs)), floatfmt=".1f"))
    if "threads" not in args.skip:
        print("\n3. singular values of the default run's matrices, milliseconds (median of 5)", flush=True)
        figures["threads"] = threads(args)
        print(tabulate([list(r.values()) for r in figures["threads"]], headers=list(figures["threads"][0]),
                       floatfmt=".2f"))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
