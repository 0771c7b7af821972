"""Seconds per training sample of each architecture at each track's input shape, on this CPU.

Used to estimate each track's run time (the tracks' ``expected_minutes_per_seed``) and the cost
of a full leaderboard sweep (docs/performance.md). Times forward + backward + SGD step on
random data with the track's batch size; the data path is measured by bench_speed.py.

    uv run python benchmarks/bench_epoch_cost.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from collapsebench.manager import build_manager
from collapsebench.registry import Registry
from collapsebench.tracks import load_tracks

#: input shape and classes of each stream at full size: (shape, classes, train images per experience x experiences)
STREAM_SHAPES = {
    "split-digits": ((1, 8, 8), 10, 1437),
    "split-mnist": ((1, 28, 28), 10, 60000),
    "permuted-mnist": ((1, 28, 28), 10, 60000),
    "split-cifar100": ((3, 32, 32), 100, 50000),
    "cifar100-shift": ((3, 32, 32), 20, 50000),
    "continual-imagenet32": ((3, 32, 32), 2, 1200),
}


def seconds_per_sample(model, shape, classes, batch_size, repeats=5) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch_size, *shape), torch.randint(0, classes, (batch_size,))
    timings = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[1:]) / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manager = build_manager()
    registry = Registry(manager)
    rows = []
    for track in load_tracks(manager).values():
        run = track.config
        shape, classes, images = STREAM_SHAPES[run["stream"]]
        record = registry.get("architecture", run["model"])
        model = record.factory(shape, classes, False, **record.resolve_options(run.get("model_options", {})))
        per_sample = seconds_per_sample(model, shape, classes, run.get("batch_size", 16))
        n_exp = run.get("stream_options", {}).get("n_experiences", 1)
        per_seed = per_sample * images * run.get("epochs", 5) * (n_exp if run["stream"] in ("permuted-mnist", "continual-imagenet32") else 1)
        rows.append([track.name, f"{per_sample * 1e3:.3f}", f"{per_sample * images:.1f}", f"{per_seed / 60:.1f}", len(track.seeds)])
    from tabulate import tabulate

    print(f"{args.threads} torch threads; training only (evaluation adds a few percent)")
    print(tabulate(rows, headers=["track", "ms / sample", "s / epoch over all experiences' data", "min / seed", "seeds"]))


if __name__ == "__main__":
    main()
