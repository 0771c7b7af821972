"""Loss of plasticity on permuted MNIST, and whether each plasticity strategy keeps it.

For naive, l2, shrink_perturb, cbp (two replacement rates), er_l2, l2_init and redo, and two
references (a fresh network per task; naive at a lower learning rate), over several seeds:
train an MLP on a sequence of permuted-MNIST tasks (the built-in ``permuted-mnist`` stream, read from the data
root) with the built-in strategies' Avalanche training plugins in Avalanche's
``SupervisedTemplate``, exactly as ``collapsebench run`` composes them. After each task it
records the accuracy on that newest task's test data (R[j][j]) and, on the same test inputs,
each hidden layer's activation erank, dead-unit fraction and dormant-unit fraction.

It evaluates only the newest task, which is all this question needs: ``collapsebench run``
evaluates the whole test stream after every task, T² evaluations, which costs more than the
training here.

    uv run python benchmarks/plasticity_permuted_mnist.py               # run (about 12 min) and plot
    uv run python benchmarks/plasticity_permuted_mnist.py --variants cbp --seeds 3   # add runs
    uv run python benchmarks/plasticity_permuted_mnist.py --plot-only   # tables and plots from the JSON

Data: ``$COLLAPSEBENCH_DATA_ROOT`` (default ``../shared/data``), holding MNIST/raw/ in
torchvision's layout. Results: ``benchmarks/plasticity_permuted_mnist.json``, where runs
accumulate (a run already there with the same scale and variant definition is not repeated);
the plot goes to ``docs/img/``; the table is printed as Markdown for docs/strategies.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "plasticity_permuted_mnist.json"
IMAGES = REPO / "docs" / "img"

# The scale: chosen so that the whole benchmark takes about 20 minutes on a shared 2-core CPU,
# with a learning rate high enough that plain SGD loses plasticity within 30 tasks.
SETTINGS = {
    "tasks": 30,
    "train_subset": 4000,  # training images per task (of the sample's 8,000), one pass
    "test_subset": 500,  # test images per task (of 2,000): accuracy and activations
    "widths": [100, 100],
    "lr": 0.03,
    "momentum": 0.9,
    "batch_size": 16,
    "epochs": 1,
    "seeds": [0, 1, 2],
}

# What is compared: a strategy with option values for this scale (anything not named keeps the
# strategy's documented default), and two references: "fresh", a newly initialized network
# trained on each task alone with the same budget (the denominator of SPEC's plasticity), and
# plain SGD at a third of the learning rate.
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
    "fresh": {"strategy": "naive", "options": {}, "fresh_each_task": True},
    "naive_lr0.01": {"strategy": "naive", "options": {}, "lr": 0.01},
}


def data_root() -> Path:
    return Path(os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))


def build_stream(registry, seed: int, settings: dict):
    from collapsebench.records import StreamContext

    record = registry.get("stream", "permuted-mnist")
    return record.factory(
        StreamContext(seed=seed, scenario="domain", data_root=data_root()),
        **record.resolve_options({
            "n_experiences": settings["tasks"],
            "train_subset": settings["train_subset"],
            "test_subset": settings["test_subset"],
        }),
    )


class Learner:
    """A model and the variant's strategy in Avalanche's ``SupervisedTemplate``."""

    def __init__(self, registry, variant: dict, stream, settings: dict):
        import torch
        from avalanche.training.plugins import EvaluationPlugin
        from avalanche.training.templates import SupervisedTemplate

        from collapsebench.records import StrategyContext
        from collapsebench.runner import compose_strategy

        self.model = registry.get("architecture", "mlp").factory(
            stream.input_shape, stream.n_classes, False, widths=settings["widths"]
        )
        name = variant["strategy"]
        record = registry.get("strategy", name)
        context = StrategyContext(model=self.model, config=None, stream=stream)
        self.parts = compose_strategy([(name, record.factory(context, **record.resolve_options(variant["options"])))])
        with warnings.catch_warnings():  # "no loggers": nothing listens, accuracy is measured below
            warnings.simplefilter("ignore", UserWarning)
            evaluation = EvaluationPlugin(loggers=[])
        lr = variant.get("lr", settings["lr"])
        self.strategy = SupervisedTemplate(
            model=self.model,
            optimizer=torch.optim.SGD(self.model.parameters(), lr=lr, momentum=settings["momentum"]),
            criterion=torch.nn.CrossEntropyLoss(),
            train_mb_size=settings["batch_size"],
            train_epochs=settings["epochs"],
            device="cpu",
            plugins=list(self.parts.plugins),
            evaluator=evaluation,
        )

    def units_replaced(self) -> dict[str, int]:
        replaced = {}
        for plugin in self.parts.plugins:  # cbp's replacements, redo's recycled units
            replaced.update(getattr(plugin, "replaced_total", None) or getattr(plugin, "recycled_total", {}))
        return replaced


def measure(model, test_dataset) -> dict:
    """Accuracy on a task's test data, and each layer's activation erank, dead and dormant units on it."""
    import torch

    from collapsebench.metrics import dead_units, dormant_units, erank
    from collapsebench.taps import capture_activations, taps_of

    loader = torch.utils.data.DataLoader(test_dataset, batch_size=len(test_dataset))
    x, y, *_ = next(iter(loader))
    taps = taps_of(model)
    model.eval()
    with torch.no_grad(), capture_activations(taps) as captured:
        accuracy = float((model(x).argmax(dim=1) == y).float().mean())
    model.train()
    layers = {}
    for tap in taps:
        h = captured[tap.name][0]
        layers[tap.name] = {"erank": float(erank(h)), "dead_units": dead_units(h), "dormant_units": dormant_units(h)}
    weight_norm = float(sum((p.detach() ** 2).sum() for p in model.parameters()) ** 0.5)
    return {"accuracy": accuracy, "layers": layers, "weight_norm": weight_norm}


def run_one(registry, name: str, seed: int, settings: dict, echo=print) -> dict:
    from collapsebench.runner import seed_everything

    variant = VARIANTS[name]
    seed_everything(seed)
    stream = build_stream(registry, seed, settings)
    learner = None
    per_task = []
    started = time.perf_counter()
    for experience, test in zip(stream.benchmark.train_stream, stream.benchmark.test_stream):
        if learner is None or variant.get("fresh_each_task"):
            learner = Learner(registry, variant, stream, settings)
        learner.strategy.train(experience)
        per_task.append(measure(learner.model, test.dataset))
        if experience.current_experience % 5 == 4:
            last = per_task[-1]
            echo(f"  {name} seed {seed} task {experience.current_experience + 1}: accuracy {last['accuracy']:.3f}, "
                 f"dead {[round(v['dead_units'], 2) for v in last['layers'].values()]} "
                 f"({time.perf_counter() - started:.0f} s)", flush=True)
    return {"variant": name, "seed": seed, "spec": variant, "tasks": per_task,
            "seconds": time.perf_counter() - started, "units_replaced": learner.units_replaced(),
            "fingerprint": stream.fingerprint}


def run_all(variants, seeds, settings, results_path: Path) -> dict:
    import torch

    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    torch.set_num_threads(1)  # a shared machine; the MLP is too small to gain from threads
    registry = Registry(build_manager())
    results = _load(results_path) if results_path.exists() else {"settings": settings, "runs": []}
    if _scale(results["settings"]) != _scale(settings):  # runs at another scale do not mix
        results = {"settings": settings, "runs": []}
    # a run is reused only if its variant is still defined the same way
    results["runs"] = [r for r in results["runs"] if VARIANTS.get(r["variant"]) == r["spec"]]
    done = {(r["variant"], r["seed"]) for r in results["runs"]}
    for seed in seeds:
        for name in variants:
            if (name, seed) in done:
                continue
            results["runs"].append(run_one(registry, name, seed, settings))
            results["settings"]["seeds"] = sorted({r["seed"] for r in results["runs"]})
            results_path.write_text(json.dumps(results, indent=1))  # each finished run is kept
    return results


def _scale(settings: dict) -> dict:
    return {key: value for key, value in settings.items() if key != "seeds"}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


# --- summaries and plots -------------------------------------------------------------------


def series(results: dict, name: str, value) -> dict[int, list[float]]:
    """Per seed, ``value(task_record)`` over tasks."""
    return {run["seed"]: [value(task) for task in run["tasks"]] for run in results["runs"] if run["variant"] == name}


def mean_layers(task: dict, metric: str) -> float:
    values = [layer[metric] for layer in task["layers"].values()]
    return sum(values) / len(values)


def over_seeds(per_seed: list[float]) -> str:
    import statistics

    spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return f"{statistics.fmean(per_seed):.3f} ± {spread:.3f}"


def table(results: dict) -> str:
    """One row per variant: windows of 5 tasks at the start and the end, mean ± sd over seeds."""
    import statistics

    first, last = slice(0, 5), slice(-5, None)
    fresh = series(results, "fresh", lambda t: t["accuracy"])
    rows = ["| variant | seeds | accuracy, tasks 1-5 | accuracy, last 5 tasks | change | plasticity, last 5 | "
            "activation erank, first 5 → last 5 | dead units, first 5 → last 5 | s per run |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in VARIANTS:
        accuracy = series(results, name, lambda t: t["accuracy"])
        if not accuracy:
            continue
        seeds = sorted(accuracy)
        start = [statistics.fmean(accuracy[s][first]) for s in seeds]
        end = [statistics.fmean(accuracy[s][last]) for s in seeds]
        # SPEC's plasticity: R[j][j] over a fresh model's accuracy on task j (same seed, same task)
        ratio = [statistics.fmean(a / f for a, f in zip(accuracy[s][last], fresh[s][last]))
                 for s in seeds if s in fresh]
        e = series(results, name, lambda t: mean_layers(t, "erank"))
        d = series(results, name, lambda t: mean_layers(t, "dead_units"))

        def mean_of(values, window):
            return statistics.fmean(statistics.fmean(values[s][window]) for s in seeds)

        seconds = statistics.fmean(r["seconds"] for r in results["runs"] if r["variant"] == name)
        rows.append(
            f"| {name} | {len(seeds)} | {over_seeds(start)} | {over_seeds(end)} | "
            f"{over_seeds([b - a for a, b in zip(start, end)])} | {over_seeds(ratio) if ratio else '-'} | "
            f"{mean_of(e, first):.1f} → {mean_of(e, last):.1f} | "
            f"{mean_of(d, first):.2f} → {mean_of(d, last):.2f} | "
            f"{seconds:.0f} |"
        )
    return "\n".join(rows)


def plot(results: dict, images: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    images.mkdir(parents=True, exist_ok=True)
    panels = [
        ("accuracy on the newest task", lambda t: t["accuracy"]),
        ("activation erank (mean over the 2 layers)", lambda t: mean_layers(t, "erank")),
        ("dead units (fraction, mean over the 2 layers)", lambda t: mean_layers(t, "dead_units")),
    ]
    styles = {"fresh": {"color": "black", "linestyle": "--"}, "naive_lr0.01": {"color": "grey", "linestyle": ":"}}
    colors = dict(zip([v for v in VARIANTS if v not in styles], plt.get_cmap("tab10").colors))
    figure = plt.figure(figsize=(14, 9))
    grid = figure.add_gridspec(2, 2)
    axes = [figure.add_subplot(grid[0, :]), figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[1, 1])]
    for axis, (label, value) in zip(axes, panels):
        for name in VARIANTS:
            runs = series(results, name, value)
            if not runs:
                continue
            values = np.array(list(runs.values()))
            tasks = np.arange(1, values.shape[1] + 1)
            style = styles[name] if name in styles else {"color": colors[name]}
            axis.plot(tasks, values.mean(axis=0), label=name, **style)
            if name not in styles:
                axis.fill_between(tasks, values.min(axis=0), values.max(axis=0), alpha=0.1, color=style["color"])
        axis.set_xlabel("task")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=9, ncol=5, loc="lower left")
    settings = results["settings"]
    figure.suptitle(
        f"Permuted MNIST (10,000-image sample), {settings['tasks']} tasks of {settings['train_subset']} images, "
        f"MLP {settings['widths']}, SGD lr {settings['lr']}, momentum {settings['momentum']}, batch "
        f"{settings['batch_size']}: mean over seeds {settings['seeds']}, band min..max",
        fontsize=10,
    )
    figure.tight_layout()
    path = images / "plasticity_permuted_mnist.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return [path]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=SETTINGS["seeds"])
    parser.add_argument("--tasks", type=int, default=SETTINGS["tasks"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--plot-only", action="store_true", help="only tables and plots from the results file")
    args = parser.parse_args(argv)
    settings = {**SETTINGS, "tasks": args.tasks, "seeds": args.seeds}
    if args.plot_only:
        results = _load(args.results)
    else:
        results = run_all(args.variants, args.seeds, settings, args.results)
    print(table(results))
    for path in plot(results, args.images):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
