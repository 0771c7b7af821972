"""Two ways to hand Avalanche tensor minibatches: an Avalanche training plugin, or a template mixin.

For a stream of fixed samples, collapsebench gives the template ``fastdata.TensorBatches``
loaders through ``fastdata.TensorBatchesPlugin``: an Avalanche training plugin that lets
Avalanche build its own loader and replaces ``strategy.dataloader`` in
``before_training_exp``/``before_eval_exp`` (Avalanche 0.6 calls those after
``make_*_dataloader`` and before the first minibatch is drawn). It replaced the mixin measured
here against it: :class:`TensorBatchesMixin`, put in front of the template class by a class
made at run time, whose ``make_train_dataloader``/``make_eval_dataloader`` build TensorBatches
instead of Avalanche's loaders. The plugin's only extra work is the loader Avalanche builds and
the plugin drops; the last table measures that alone.

Both run through ``collapsebench.runner.execute`` (``runner.make_template`` swapped for the
mixin variant), interleaved in one process, on two workloads:

- ``split-mnist``: 5 experiences of the shared sample's training images, 3 epochs, minibatches
  of 32, the whole test stream after each experience;
- ``permuted-mnist``: 100 tasks of 500 images, one pass, minibatches of 16, ``current``
  evaluation: short experiences, where building a loader per experience weighs most.

Per workload and variant: medians over ``--repeats`` of the training, evaluation and loop
(training + evaluation + gathering) wall-clock seconds the runner records and of the process's
CPU seconds for the whole run (``cpu``: far less moved by other jobs on a shared machine), the
plugin's ratio to the mixin's, and whether the two accuracy matrices are identical (the same seed must give the same
result). Needs the MNIST files under --data-root (default: ../shared/data).

    uv run --locked python benchmarks/bench_loader_swap.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "split-mnist": {"stream": "split-mnist", "epochs": 3, "batch_size": 32, "lr": 0.01},
    "permuted-mnist": {"stream": "permuted-mnist", "epochs": 1, "batch_size": 16, "lr": 0.03, "evaluation": "current",
                       "stream_options": {"n_experiences": 100, "train_subset": 500, "test_subset": 500},
                       "model_options": {"widths": [100, 100]}},
}


def mixin_make_template(real_make_template):
    """``runner.make_template`` with the template mixin in place of the plugin: the real one,
    told the stream's samples are not fixed (so no plugin), given the mixed-in template class."""
    import dataclasses

    from avalanche.training.templates import SupervisedTemplate

    from collapsebench import fastdata

    class TensorBatchesMixin:
        """The replaced design: the template's own loader methods build TensorBatches."""

        collapsebench_cache_bytes = fastdata.CACHE_BYTES
        collapsebench_transient = ("_gathered_tensors",)

        def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                                  drop_last=False, **kwargs):
            def fallback():
                super(TensorBatchesMixin, self).make_train_dataloader(
                    num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
                    persistent_workers=persistent_workers, drop_last=drop_last, **kwargs)
                return self.dataloader

            self.dataloader = fastdata.PendingTensorBatches(self.adapted_dataset, self.device, self.train_mb_size,
                                                            shuffle, drop_last, fallback)

        def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None, persistent_workers=False,
                                 **kwargs):
            cache = self.__dict__.setdefault("_gathered_tensors", OrderedDict())
            key = id(self.experience.dataset)
            if key not in cache:
                cache[key] = (self.experience.dataset, fastdata.gather_onto(self.adapted_dataset, self.device))
                while len(cache) > 1 and sum(fastdata._nbytes(t) for _, t in cache.values()) > \
                        self.collapsebench_cache_bytes:
                    cache.popitem(last=False)
            tensors = cache[key][1]
            if tensors is None:
                return super().make_eval_dataloader(num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
                                                    persistent_workers=persistent_workers, **kwargs)
            self.dataloader = fastdata.TensorBatches(tensors, self.eval_mb_size, shuffle)

    mixed = {}

    def make_template(config, stream, model, *, evaluator, plugins=(), template=None, **template_kwargs):
        base = template or SupervisedTemplate
        if stream.fixed_samples:
            template = mixed.setdefault(base, type(f"Mixed{base.__name__}", (TensorBatchesMixin, base), {}))
        built = real_make_template(config, dataclasses.replace(stream, fixed_samples=False), model,
                                   evaluator=evaluator, plugins=plugins, template=template, **template_kwargs)
        if config.evaluation == "current":
            built.collapsebench_cache_bytes = 0  # as the runner set it for the mixin
        return built

    return make_template


def one_run(manager, registry, data_root: str, workload: dict, seed: int) -> dict:
    from collapsebench.config import build_config
    from collapsebench.runner import execute

    with tempfile.TemporaryDirectory() as out:
        config = build_config({"model": "mlp", "strategy": "naive", "evaluators": [], "momentum": 0.9, "seed": seed,
                               "probe_size": 100, "data_root": data_root, "out": out, "loggers": [],
                               "checkpoint": False, **workload})
        cpu = time.process_time()
        result = execute(config, manager, registry, echo=lambda *a, **k: None)
        cpu = time.process_time() - cpu
    timing = result["timing"]
    # "cpu": this process's CPU seconds for the whole run; other jobs on the machine slow the
    # wall-clock phases far more than they change it.
    return {"train": timing["train"], "evaluate": timing["evaluate"],
            "loop": timing["train"] + timing["evaluate"] + timing["data"], "cpu": cpu,
            "matrix": result["accuracy_matrix"]}


def loader_construction_ms(manager, registry, data_root: str, workload: dict, calls: int) -> dict[str, float]:
    """Milliseconds per call of what only the plugin variant pays: Avalanche 0.6 building its own
    train loader (TaskBalancedDataLoader) and eval loader (SingleDatasetDataLoader) for one
    experience of the workload, which the plugin then replaces. Each call is on a freshly adapted
    dataset of another experience, as in a run; medians over up to ``calls`` experiences."""
    import torch
    from avalanche.training.templates import SupervisedTemplate

    from collapsebench.config import build_config, resolve_component_options
    from collapsebench.runner import build_model, build_stream

    config = build_config({"model": "mlp", "strategy": "naive", "evaluators": [], "data_root": data_root, **workload})
    options = resolve_component_options(config, registry)
    stream = build_stream(config, registry, options["stream"][config.stream])
    model = build_model(config, registry, stream, options["model"][config.model])
    strategy = SupervisedTemplate(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                                  train_mb_size=config.batch_size, eval_mb_size=config.eval_batch_size)
    seconds = {"train loader": [], "eval loader": []}
    for phase, experiences, make, adapt in (
            ("train loader", stream.benchmark.train_stream, strategy.make_train_dataloader, "train"),
            ("eval loader", stream.benchmark.test_stream, strategy.make_eval_dataloader, "eval")):
        for index in range(min(calls, len(experiences))):
            strategy.experience = experiences[index]
            strategy.adapted_dataset = getattr(strategy.experience.dataset, adapt)()
            started = time.perf_counter()
            make()
            seconds[phase].append(time.perf_counter() - started)
    return {phase: 1000 * statistics.median(values) for phase, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--data-root", default=os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    args = parser.parse_args()

    from collapsebench import runner
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager()
    registry = Registry(manager)
    product = runner.make_template
    variants = {"mixin": mixin_make_template(product), "plugin": product}
    rows = []
    for name in args.workloads if args.repeats > 0 else ():
        workload = WORKLOADS[name]
        runner.make_template = product
        one_run(manager, registry, str(args.data_root), workload, seed=0)  # warm-up: caches, first-call costs
        measured = {variant: [] for variant in variants}
        for repeat in range(args.repeats):
            order = list(variants) if repeat % 2 == 0 else list(reversed(variants))  # interleaved, alternating
            for variant in order:
                runner.make_template = variants[variant]
                measured[variant].append(one_run(manager, registry, str(args.data_root), workload, seed=repeat))
        runner.make_template = product
        same = all(a["matrix"] == b["matrix"] for a, b in zip(measured["mixin"], measured["plugin"]))
        for phase in ("train", "evaluate", "loop", "cpu"):
            medians = {v: statistics.median(r[phase] for r in runs) for v, runs in measured.items()}
            spread = {v: (min(r[phase] for r in runs), max(r[phase] for r in runs)) for v, runs in measured.items()}
            rows.append((name, phase, medians["mixin"], medians["plugin"], medians["plugin"] / medians["mixin"],
                         spread, same))
    construction = {name: loader_construction_ms(manager, registry, str(args.data_root), WORKLOADS[name], 50)
                    for name in args.workloads}
    if not rows:  # --repeats 0: the construction costs alone
        construction_table(construction)
        return
    print(f"medians over {args.repeats} interleaved repeats (seconds; range in brackets)\n")
    print("| workload | phase | mixin | plugin | plugin / mixin | same accuracy matrices |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, phase, a, b, ratio, spread, same in rows:
        print(f"| {name} | {phase} | {a:.3f} [{spread['mixin'][0]:.3f}, {spread['mixin'][1]:.3f}] | "
              f"{b:.3f} [{spread['plugin'][0]:.3f}, {spread['plugin'][1]:.3f}] | {ratio:.3f} | {'yes' if same else 'NO'} |")

    construction_table(construction)


def construction_table(construction: dict) -> None:
    print("\nwhat only the plugin pays, per experience: Avalanche building the loader it replaces "
          "(ms per call, median over up to 50 experiences)\n")
    print("| workload | train loader | eval loader |")
    print("| --- | --- | --- |")
    for name, ms in construction.items():
        print(f"| {name} | {ms['train loader']:.2f} | {ms['eval loader']:.2f} |")


if __name__ == "__main__":
    main()
