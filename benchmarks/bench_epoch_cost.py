"""What each benchmark track costs: CPU seconds per sample, per seed, and per leaderboard sweep.

Three measurements, all in CPU time (``time.process_time``) with one torch thread, so that a
machine shared with other jobs does not inflate them the way it inflates wall time:

1. Per sample, for each track's architecture at the track's input shape: a training step
   (forward, backward, SGD step at the track's batch size) and a test forward pass (no
   gradient, at the evaluation batch size), on random data.
2. Per strategy (``--strategies``): how much each built-in strategy multiplies naive SGD's
   training time, measured through the real runner (Avalanche's template and the strategy's
   Avalanche training plugins) on a synthetic stream with a track's architecture and shapes.
   Experiences after the first only: replay's buffer, LwF's teacher and EWC's penalty are
   empty during the first.
3. Per track: one seed = training samples x epochs x step cost + test samples x evaluations x
   forward cost (after every experience the whole test stream is evaluated: the accuracy
   matrix); a full leaderboard sweep = every built-in strategy x the track's seeds.

Not counted: the evaluators' collapse measurements (once per experience on the probe set;
docs/evaluators.md), data loading and Avalanche's per-iteration bookkeeping (docs/performance.md).

    uv run python benchmarks/bench_epoch_cost.py [--strategies] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from collapsebench import Option, Strategy, Stream, hookimpl
from collapsebench.manager import PluginInfo, build_manager
from collapsebench.registry import Registry
from collapsebench.tracks import load_tracks

EVAL_BATCH = 512  # RunConfig.eval_batch_size


def stream_sizes(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Input shape, classes, experiences and the full-data train/test sizes of a built-in stream."""
    n = options.get("n_experiences")

    def subset(per_experience: int, total: int) -> int:
        return per_experience * n if per_experience else total

    if name == "split-digits":
        # 1,797 images, 20% held out (stratified): 1,437 train, 360 test.
        return {"shape": (1, 8, 8), "classes": 10, "experiences": n, "train": 1437, "test": 360}
    if name == "split-mnist":
        return {"shape": (1, 28, 28), "classes": 10, "experiences": n,
                "train": subset(options["train_subset"], 60000), "test": subset(options["test_subset"], 10000)}
    if name == "permuted-mnist":  # every experience is all of MNIST, permuted
        return {"shape": (1, 28, 28), "classes": 10, "experiences": n,
                "train": subset(options["train_subset"], 60000 * n), "test": subset(options["test_subset"], 10000 * n)}
    if name in ("split-cifar100", "cifar100-shift"):
        return {"shape": (3, 32, 32), "classes": 100 if name == "split-cifar100" else 20, "experiences": n,
                "train": subset(options["train_subset"], 50000), "test": subset(options["test_subset"], 10000)}
    if name == "continual-imagenet32":  # binary tasks
        return {"shape": (3, 32, 32), "classes": 2, "experiences": n,
                "train": 2 * options["train_per_class"] * n, "test": 2 * options["test_per_class"] * n}
    raise SystemExit(f"no sizes known for stream {name!r}")


def cpu_seconds(call, repeats: int) -> float:
    """The least CPU seconds of ``call`` over ``repeats`` runs, after one warm-up: other jobs on
    the machine still cost a process CPU time (cache and memory-bandwidth contention), never save it."""
    call()
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        call()
        samples.append(time.process_time() - started)
    return min(samples)


def per_sample_costs(model, shape, classes, batch_size, repeats) -> tuple[float, float]:
    """(CPU seconds per training sample, per test sample)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch_size, *shape), torch.randint(0, classes, (batch_size,))
    x_test = torch.randn(EVAL_BATCH, *shape)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def forward():
        with torch.no_grad():
            model(x_test)

    model.train()
    train = cpu_seconds(step, repeats) / batch_size
    model.eval()
    test = cpu_seconds(forward, repeats) / EVAL_BATCH
    return train, test


# --- strategies through the real runner -----------------------------------------------


# This module is also the collapsebench plugin that provides them (registered in main()).
#: (CPU seconds in training epochs, CPU seconds of the whole experience) per trained experience
CLOCK: list[tuple[float, float]] = []


@hookimpl
def collapsebench_streams():
    return [Stream("bench-synthetic", "random inputs and labels, for timing", _synthetic_stream, scenarios=("class",),
                   options=(Option("shape", [1, 28, 28], "input shape"), Option("classes", 10, "classes"),
                            Option("per_experience", 256, "training samples per experience"),
                            Option("n_experiences", 3, "experiences")))]


@hookimpl
def collapsebench_strategies():
    return [Strategy("bench_clock", "records each experience's training CPU time", _clock_parts)]


def _synthetic_stream(context, shape, classes, per_experience, n_experiences):
    from collapsebench.records import StreamData
    from collapsebench_plugins.streams.tensors import build_benchmark

    generator = torch.Generator().manual_seed(context.seed)
    parts = []
    for _ in range(n_experiences):
        parts.append(tuple((torch.randn(size, *shape, generator=generator),
                            torch.randint(0, classes, (size,), generator=generator)) for size in (per_experience, 16)))
    benchmark = build_benchmark(None, None, None, None, parts, context.scenario)
    return StreamData(benchmark, tuple(shape), classes, context.scenario, "synthetic", fixed_samples=True)


def _clock_parts(context):
    """An Avalanche training plugin placed after the strategy's own: the experience's clock stops
    after their after_training_exp work (EWC's Fisher pass, replay's buffer update)."""
    from avalanche.core import SupervisedPlugin

    from collapsebench.records import StrategyParts

    class ExperienceClock(SupervisedPlugin):
        def before_training_exp(self, strategy, **kwargs):
            self.started, self.in_epochs = time.process_time(), 0.0

        def before_training_epoch(self, strategy, **kwargs):
            self.epoch_started = time.process_time()

        def after_training_epoch(self, strategy, **kwargs):
            self.in_epochs += time.process_time() - self.epoch_started

        def after_training_exp(self, strategy, **kwargs):
            CLOCK.append((self.in_epochs, time.process_time() - self.started))

    return StrategyParts(plugins=[ExperienceClock()])


def strategy_costs(track, registry, manager, strategies, per_experience, repeats) -> dict[str, dict[str, float]]:
    """Each strategy's CPU seconds per experience of ``per_experience`` samples, experiences after
    the first: ``epoch`` (one training epoch: per-update work) and ``experience`` (the rest:
    per-experience work such as EWC's Fisher pass), medians over ``repeats``."""
    from collapsebench.config import build_config
    from collapsebench.runner import execute

    run, sizes = track.config, stream_sizes(track.config["stream"], _stream_options(registry, track))
    measured: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):  # interleaved, so that all strategies share the machine's noise
        for strategy in strategies:
            with tempfile.TemporaryDirectory() as out:
                config = build_config({
                    "stream": "bench-synthetic", "model": run["model"], "model_options": run.get("model_options", {}),
                    "stream_options": {"shape": list(sizes["shape"]), "classes": sizes["classes"],
                                       "per_experience": per_experience},
                    "strategy": f"{strategy}+bench_clock", "evaluators": [], "epochs": 1,
                    "batch_size": run.get("batch_size", 16), "probe_size": 16, "checkpoint": False, "out": out,
                })
                CLOCK.clear()
                execute(config, manager, registry, echo=lambda *a, **k: None)
                later = CLOCK[1:]
                epoch = sum(e for e, _ in later) / len(later)
                measured.setdefault(strategy, []).append((epoch, sum(t for _, t in later) / len(later) - epoch))
    return {strategy: {"epoch": statistics.median(e for e, _ in values),
                       "experience": statistics.median(x for _, x in values)}
            for strategy, values in measured.items()}


def training_factor(costs: dict[str, dict[str, float]], strategy: str, epochs: int) -> float:
    """A strategy's training time over naive SGD's at ``epochs`` epochs per experience."""
    def per_experience(name):
        return costs[name]["epoch"] * epochs + max(0.0, costs[name]["experience"])

    return per_experience(strategy) / per_experience("naive")


def _stream_options(registry, track) -> dict[str, Any]:
    return registry.get("stream", track.config["stream"]).resolve_options(track.config.get("stream_options", {}))


# --- the whole sweep ---------------------------------------------------------------------


def lpt_makespan(durations: list[float], workers: int) -> float:
    """Wall time of ``durations`` on ``workers`` when the longest jobs start first."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time per core)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--strategies", action="store_true",
                        help="also measure each built-in strategy's training cost over naive SGD (about a minute "
                             "per architecture in --multiplier-tracks)")
    parser.add_argument("--multiplier-tracks", default="permuted-mnist-mlp,split-cifar100-resnet18,continual-imagenet32-convnet",
                        help="tracks whose architectures the strategies are measured with")
    parser.add_argument("--per-experience", type=int, default=256,
                        help="synthetic training samples per experience for the strategy measurements")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Avalanche's replay plugin, every experience
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    manager = build_manager()
    manager.register_plugin(sys.modules[__name__], PluginInfo("bench", "module", __name__))
    registry = Registry(manager)
    tracks = {name: t for name, t in load_tracks(manager).items()}
    builtin = [e.record.name for e in registry.entries("strategy") if e.plugin == "builtin_strategies"]

    figures: dict[str, Any] = {"threads": args.threads, "strategies": builtin, "tracks": {}}
    for track in tracks.values():
        run = track.config
        sizes = stream_sizes(run["stream"], _stream_options(registry, track))
        record = registry.get("architecture", run["model"])
        model = record.factory(sizes["shape"], sizes["classes"], False, **record.resolve_options(run.get("model_options", {})))
        train, test = per_sample_costs(model, sizes["shape"], sizes["classes"], run.get("batch_size", 16), args.repeats)
        epochs = run.get("epochs", 5)
        train_seconds = train * sizes["train"] * epochs
        test_seconds = test * sizes["test"] * sizes["experiences"]
        figures["tracks"][track.name] = {
            "model": run["model"], "seeds": len(track.seeds), "experiences": sizes["experiences"],
            "train_samples": sizes["train"], "epochs": epochs, "test_samples": sizes["test"],
            "train_ms_per_sample": 1e3 * train, "test_ms_per_sample": 1e3 * test,
            "train_cpu_s_per_seed": train_seconds, "test_cpu_s_per_seed": test_seconds,
        }
        print(f"{track.name}: {1e3 * train:.3f} ms/train sample, {1e3 * test:.4f} ms/test sample", flush=True)

    costs: dict[str, dict[str, dict[str, float]]] = {}  # measured with this track's architecture
    if args.strategies:
        for name in args.multiplier_tracks.split(","):
            costs[name] = strategy_costs(tracks[name], registry, manager, builtin, args.per_experience,
                                         max(1, args.repeats // 3))
            epochs = tracks[name].config.get("epochs", 5)
            print(f"training factors on {name}: " + ", ".join(
                f"{s} {training_factor(costs[name], s, epochs):.2f}" for s in builtin), flush=True)
    figures["strategy_costs"] = costs
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def report(figures: dict[str, Any]) -> None:
    from tabulate import tabulate

    strategies, costs = figures["strategies"], figures["strategy_costs"]
    rows, factor_rows = [], []
    for name, t in figures["tracks"].items():
        factors = track_factors(t, costs, strategies, figures["tracks"])
        per_job = {s: (t["train_cpu_s_per_seed"] * factors[s] + t["test_cpu_s_per_seed"]) / 3600 for s in strategies}
        jobs = [hours for s in strategies for hours in [per_job[s]] * t["seeds"]]
        t.update({"training_factors": factors, "cpu_h_per_seed_naive": per_job.get("naive"),
                  "cpu_h_sweep": sum(jobs), "wall_h_on": {n: lpt_makespan(jobs, n) for n in (1, 8, 32)}})
        rows.append([name, f"{t['train_ms_per_sample']:.3f}", f"{t['test_ms_per_sample']:.4f}",
                     f"{t['train_samples']:,} x {t['epochs']}", f"{t['test_samples']:,} x {t['experiences']}",
                     f"{per_job.get('naive', 0):.2f}", f"{len(strategies)} x {t['seeds']}", f"{sum(jobs):.1f}",
                     " / ".join(f"{t['wall_h_on'][n]:.1f}" for n in (1, 8, 32))])
        factor_rows.append([name, *(f"{factors[s]:.2f}" for s in strategies)])
    print(f"\nCPU time with {figures['threads']} torch thread(s); hours are CPU hours (one core each)")
    print(tabulate(rows, headers=["track", "ms/train sample", "ms/test sample", "train samples x epochs",
                                  "test samples x evaluations", "CPU h/seed (naive)", "jobs", "CPU h sweep",
                                  "wall h on 1 / 8 / 32 workers"], tablefmt="github"))
    if costs:
        print("\nTraining time over naive SGD at each track's epochs (measured on: " + ", ".join(costs) + ")")
        print(tabulate(factor_rows, headers=["track", *strategies], tablefmt="github"))


def track_factors(track: dict[str, Any], costs, strategies, tracks) -> dict[str, float]:
    """Each strategy's training factor for ``track``: from the costs measured on the same
    architecture, else the mean of the factors from every architecture measured; 1 without any."""
    same = [c for name, c in costs.items() if tracks[name]["model"] == track["model"]]
    sources = same[:1] or list(costs.values())
    if not sources:
        return {s: 1.0 for s in strategies}
    return {s: statistics.mean(training_factor(c, s, track["epochs"]) for c in sources) for s in strategies}


if __name__ == "__main__":
    main()
