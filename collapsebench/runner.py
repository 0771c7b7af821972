"""One run: build the stream, model, strategy and evaluators from the registry, let Avalanche
train and evaluate, and write the run directory.

Avalanche's ``SupervisedTemplate`` does all training and evaluation; this module only wires
the parts together and records what happened.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench import avalanche_imports

avalanche_imports.install()  # ahead of every Avalanche import below and in the run (see that module)

import numpy as np
import torch

from collapsebench import results as results_io
from collapsebench.config import RunConfig, identity_differences, identity_of, resolve_component_options
from collapsebench.errors import CollapsebenchError, Diverged, PluginFailed
from collapsebench.divergence import DivergenceGuard, TrainingDiverged
from collapsebench import eventfiles, faults
from collapsebench.evaluation import EpochLoss, LeanEvaluationPlugin, Recorder
from collapsebench.interrupts import StopAtSafePoint, deferred_interrupts
from collapsebench import checkpoint, dispatch, fastdata, protocols
from collapsebench.journal import Journal
from collapsebench.manager import PluginManager
from collapsebench.online import OnlineAccuracy
from collapsebench.metrics.accuracy import MissingCells, Summaries, accuracy_summaries
from collapsebench.probe import ProbeSet
from collapsebench.progress import ProgressLogger
from collapsebench.records import EvaluatorContext, StrategyContext, StrategyParts, StreamContext, StreamData
from collapsebench.registry import Registry
from collapsebench.taps import taps_of

ACCURACY_PREFIX = "Top1_Acc_Exp/eval_phase/test_stream/"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_stream(config: RunConfig, registry: Registry, options: dict[str, Any]) -> StreamData:
    record = registry.get("stream", config.stream)
    context = StreamContext(
        seed=config.seed,
        scenario=config.scenario or record.default_scenario,
        data_root=Path(config.data_root).expanduser(),
        download=config.download,
    )
    return _build_named_stream(registry, config.stream, context, options)


def _build_named_stream(registry: Registry, name: str, context: StreamContext, options: dict[str, Any]) -> StreamData:
    def build_other(other: str, other_context: StreamContext, other_options: dict[str, Any]) -> StreamData:
        resolved = registry.get("stream", other).resolve_options(other_options)
        return _build_named_stream(registry, other, other_context, resolved)

    context.build_stream = build_other
    stream = _call_factory(registry, "stream", name, context, **options)
    if not isinstance(stream, StreamData):
        raise CollapsebenchError(f"Stream {name!r} factory returned {type(stream).__name__}, not StreamData.")
    return stream


def build_model(config: RunConfig, registry: Registry, stream: StreamData, options: dict[str, Any]):
    model = _call_factory(
        registry, "architecture", config.model, tuple(stream.input_shape), stream.n_classes, stream.scenario == "task", **options
    )
    taps_of(model)  # fail now, naming the model, if it declares no tapped layers
    if stream.reset_head_each_experience and not callable(getattr(model, "collapsebench_reset_head", None)):
        plugin = registry.entry("architecture", config.model).plugin
        raise CollapsebenchError(
            f"The stream {config.stream!r} resets the output layer at every experience, but the model "
            f"{config.model!r} (from collapsebench plugin {plugin!r}) has no collapsebench_reset_head() method: "
            "add one (see collapsebench.Architecture) or choose another model."
        )
    return model


def _call_factory(registry: Registry, kind: str, name: str, *args, **kwargs):
    entry = registry.entry(kind, name)
    try:
        built = entry.record.factory(*args, **kwargs)
    except CollapsebenchError:
        raise
    except Exception as exc:
        import traceback

        raise CollapsebenchError(
            f"The {kind} {name!r} (from collapsebench plugin {entry.plugin!r}) failed to build: "
            f"{type(exc).__name__}: {exc}",
            details=traceback.format_exc(),
        ) from None
    expected = {"strategy": (StrategyParts, "collapsebench.StrategyParts"),
                "evaluator": ((list, tuple), "a list of Avalanche metrics")}.get(kind)
    if expected and not isinstance(built, expected[0]):
        raise CollapsebenchError(
            f"The {kind} {name!r} (from collapsebench plugin {entry.plugin!r}): its factory returned "
            f"{type(built).__name__}; expected {expected[1]}."
        )
    return built


def compose_strategy(parts: list[tuple[str, StrategyParts]]) -> StrategyParts:
    """One ``StrategyParts`` from several: Avalanche training plugins concatenated in order."""
    template_owners = [(name, p) for name, p in parts if p.template is not None]
    if len(template_owners) > 1:
        names = ", ".join(name for name, _ in template_owners)
        raise CollapsebenchError(f"Strategies {names} each bring their own Avalanche template; only one may.")
    composed = StrategyParts(plugins=[plugin for _, p in parts for plugin in p.plugins])
    if template_owners:
        composed.template = template_owners[0][1].template
    for _, p in parts:
        composed.template_kwargs = {**composed.template_kwargs, **p.template_kwargs}
    return composed


def make_optimizer(config: RunConfig, model):
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_template(config: RunConfig, stream: StreamData, model, *, evaluator, plugins=(), template=None,
                  **template_kwargs):
    """An Avalanche template training ``model`` with the run's budget and data path.

    The run's own strategy and the fresh learners of the plasticity evaluator are both made here,
    so that "the same budget" means the same code.
    """
    from avalanche.training.templates import SupervisedTemplate

    template = template or SupervisedTemplate
    if stream.fixed_samples:
        # First: a plugin that brings its own loader (replay) then replaces the tensor batches.
        plugins = [fastdata.TensorBatchesPlugin(), *plugins]
    template = dispatch.with_lean_dispatch(template)
    return template(
        model=model,
        optimizer=make_optimizer(config, model),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=config.eval_batch_size,
        device=config.device,
        plugins=list(plugins),
        evaluator=evaluator,
        **template_kwargs,
    )


def accuracy_row(eval_results: dict[str, float], columns: list[int] | int) -> dict[int, float]:
    """Measured cells of one row of the accuracy matrix (test experience -> accuracy) from
    Avalanche's per-experience accuracy metrics; ``columns``: the experiences tested (an int: all
    of ``range(columns)``)."""
    columns = list(range(columns)) if isinstance(columns, int) else columns
    by_experience = {}
    for key, value in eval_results.items():
        if key.startswith(ACCURACY_PREFIX):
            by_experience[int(key.rsplit("/Exp", 1)[1])] = float(value)
    missing = [j for j in columns if j not in by_experience]
    if missing:
        raise CollapsebenchError(f"Avalanche reported no accuracy for test experiences {missing}.")
    return {j: by_experience[j] for j in columns}


def evaluate(strategy, evaluation, test_stream, columns: list[int]) -> dict[int, float]:
    """Avalanche's eval on the test experiences ``columns`` only (a slice of the test stream).

    Avalanche's plugin remembers the last value of every metric it ever reported; without the
    reset, each call would copy one entry per experience tested so far.
    """
    evaluation.reset_last_metrics()
    sub_stream = test_stream if len(columns) == len(test_stream) else test_stream[columns]
    return accuracy_row(strategy.eval(sub_stream), columns)


def dense_row(cells: dict[int, float], n_experiences: int) -> list[float | None]:
    row: list[float | None] = [None] * n_experiences
    for j, value in cells.items():
        row[j] = value
    return row


def execute(config: RunConfig, manager: PluginManager, registry: Registry, echo=print,
            resume: bool = False, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Run one benchmark and write its run directory; return the result.

    With ``resume``, continue from the run directory's last checkpoint (after its last
    completed experience); the result equals that of an uninterrupted run. A checkpoint that
    this installation did not sign is refused unless ``trust_checkpoint`` is given.

    Four phases, each its own function below: :func:`build_run` (everything made before the
    first step), :func:`restore_progress` (a resumed run's finished experiences),
    :func:`train_experiences` (the loop) and :func:`finish_run` (the result and what it raises).
    """
    # The run's thread count is the run's: a notebook or a benchmark calling this keeps its own after.
    threads = torch.get_num_threads()
    try:
        run = build_run(config, manager, registry, echo=echo, resume=resume)
        progress = restore_progress(run, trust_checkpoint, echo) if resume else Progress.fresh(run.build_seconds)
        # Held until results.json is written: a signal during the final write waits for it.
        with deferred_interrupts(run.stopper, hold=True):
            status, outcome = train_experiences(run, progress, manager, echo)
        return finish_run(run, progress, status, outcome, manager)
    finally:
        torch.set_num_threads(threads)


@dataclass
class BuiltRun:
    """Everything of one run that exists before its first training step: read-only afterwards."""

    config: RunConfig
    options: dict[str, Any]  # resolved component options, after collapsebench_configure_run
    identity: dict[str, Any]  # what a checkpoint must match to be resumed under this config
    protocol: Any
    run_dir: Path
    started: float  # perf_counter at the start of the build; the run's total time counts from here
    build_seconds: float
    stream: StreamData
    probe: ProbeSet
    recorder: Recorder
    metrics: list  # the evaluators' Avalanche metrics, in config order
    journal: Journal
    progress_log: ProgressLogger
    trackers: list
    evaluation: LeanEvaluationPlugin
    tensorboard: Any  # the TensorBoard logger's writer, or None
    board: Any  # TensorBoardFigures, or None
    stopper: StopAtSafePoint
    online: OnlineAccuracy
    strategy: Any  # the Avalanche template

    @property
    def n_experiences(self) -> int:
        return len(self.stream.benchmark.train_stream)


@dataclass
class Progress:
    """What the loop adds to, experience by experience; a resumed run starts from its checkpoint's."""

    timing: dict[str, float]
    matrix: list[list[float | None]] = field(default_factory=list)  # rows so far, None where nothing is measured
    online_accuracy: list[float | None] = field(default_factory=list)
    done: int = 0  # experiences finished before the loop started (a resumed run's)
    #: What stopped the loop when it failed (status "failed"): raised again once the result is written.
    failure: BaseException | None = None

    @classmethod
    def fresh(cls, build_seconds: float) -> "Progress":
        return cls(timing={"build": build_seconds, "train": 0.0, "evaluate": 0.0, "data": 0.0, "figures": 0.0,
                           "checkpoint": 0.0})


def build_run(config: RunConfig, manager: PluginManager, registry: Registry, echo=print,
              resume: bool = False) -> BuiltRun:
    """Phase 1: resolve options, read the data, build model, evaluators, strategy and loggers.

    Separate because everything here can fail on the user's input (a bad option, a model without
    reset_head, a broken plugin) and must fail before the run directory is touched; only at its
    end is the directory prepared.
    """
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.logging import TensorboardLogger

    from collapsebench.records import LoggerContext
    from collapsebench.report.tensorboard import TensorBoardFigures

    manager.call_each("collapsebench_configure_run", config=config)
    # After the hook: what it adjusted is what gets built and what results.json records.
    options = resolve_component_options(config, registry)
    protocol = protocols.resolve(config.evaluation, registry.get("stream", config.stream).default_evaluation,
                                 options["stream"][config.stream])
    run_dir = config.run_dir()
    _check_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    started = time.perf_counter()

    stream = build_stream(config, registry, options["stream"][config.stream])
    model = build_model(config, registry, stream, options["model"][config.model])
    n_experiences = len(stream.benchmark.train_stream)
    probe = ProbeSet.draw(stream.benchmark.test_stream, config.probe_size, config.seed)

    recorder = Recorder()
    evaluator_context = EvaluatorContext(
        config=config,
        stream=stream,
        probe=probe,
        architecture_factory=lambda: build_model(config, registry, stream, options["model"][config.model]),
        recorder=recorder,
        make_learner=lambda learner_model, evaluator: make_template(config, stream, learner_model, evaluator=evaluator),
        timing=fastdata.Timing(),
    )
    metrics = []
    for name in config.evaluators:
        metrics.extend(_call_factory(registry, "evaluator", name, evaluator_context, **options["evaluator"][name]))

    strategy_context = StrategyContext(model=model, config=config, stream=stream)
    parts = compose_strategy(
        [(name, _call_factory(registry, "strategy", name, strategy_context, **options["strategy"][name]))
         for name in config.strategy_components]
    )
    # Only now, with the data read and every part built, is the run directory touched.
    run_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(run_dir)
    if not resume:
        _clear_run_dir(run_dir, registry)  # a stale result or tracker log must not pass for this run
        checkpoint.remove(run_dir)
        journal.remove()
        results_io.write_json(run_dir / checkpoint.CONFIG_FILE, config.to_dict())
    progress_log = ProgressLogger(n_experiences, echo=echo)
    trackers = build_loggers(config, registry, LoggerContext(config=config, run_dir=run_dir, resume=resume))
    evaluation = LeanEvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        EpochLoss(),  # Avalanche's, computed once per epoch
        *metrics,
        loggers=[*trackers, progress_log],
    )
    tensorboard = next((t.writer for t in trackers if isinstance(t, TensorboardLogger)), None)
    board = TensorBoardFigures(tensorboard, strategy=config.strategy, taps=taps_of(model),
                               n_experiences=n_experiences, images=config.tensorboard_figures) if tensorboard else None
    stopper = StopAtSafePoint()
    online = OnlineAccuracy()
    strategy = make_template(config, stream, model, evaluator=evaluation,
                             plugins=[*parts.plugins, online, DivergenceGuard(), stopper],
                             template=parts.template, **parts.template_kwargs)
    if protocol.kind == "current":
        # Each test experience is evaluated once: keeping its gathered tensors would only grow memory.
        for plugin in strategy.plugins:
            if isinstance(plugin, fastdata.TensorBatchesPlugin):
                plugin.cache_bytes = 0
    return BuiltRun(
        config=config, options=options, identity=identity_of({**config.to_dict(), "resolved_options": options}),
        protocol=protocol, run_dir=run_dir, started=started, build_seconds=time.perf_counter() - started,
        stream=stream, probe=probe, recorder=recorder, metrics=metrics, journal=journal, progress_log=progress_log,
        trackers=trackers, evaluation=evaluation, tensorboard=tensorboard, board=board, stopper=stopper,
        online=online, strategy=strategy,
    )


def restore_progress(run: BuiltRun, trust_checkpoint: bool, echo=print) -> Progress:
    """Phase 2 (resume only): load the checkpoint into the built strategy and replay the journal.

    Separate because it is the only phase that reads an earlier process's state, with its own
    refusals (an unsigned checkpoint, a config edited since), and a fresh run skips it.
    """
    progress = Progress.fresh(run.build_seconds)
    restored = checkpoint.load(run.strategy, run.run_dir, lambda m: make_optimizer(run.config, m),
                               trust=trust_checkpoint)
    if not restored:
        return progress
    _check_resumed_identity(restored.get("config_identity"), run.identity, run.run_dir)
    progress.done = restored["experiences_done"]
    for entry in run.journal.read(restored["journal_bytes"], progress.done, restored.get("journal_digest")):
        progress.matrix.append(dense_row({int(j): a for j, a in entry["cells"]}, run.n_experiences))
        progress.online_accuracy.append(entry["online_accuracy"])
        run.recorder.records.extend(entry["records"])
    run.recorder.seconds = restored["evaluator_seconds"]
    # The checkpoint brought its own copies of these Avalanche training plugins; the live ones must be in charge.
    run.strategy.plugins = [run.stopper if isinstance(p, StopAtSafePoint) else run.online
                            if isinstance(p, OnlineAccuracy) else p for p in run.strategy.plugins]
    for metric, state in zip(run.metrics, restored["metric_states"]):
        if state is not None:
            metric.load_state_dict(state)
    progress.timing.update({k: v for k, v in restored["timing"].items() if k != "build"})
    echo(f"Resuming after experience {progress.done} of {run.n_experiences}.")
    # What the interrupted run logged after its checkpoint is logged again from here on.
    if run.tensorboard is not None:
        eventfiles.drop_events_after(run.run_dir, run.strategy.clock.train_iterations,
                                     keep=getattr(run.tensorboard._get_file_writer().event_writer, "_file_name", None))
    return progress


def train_experiences(run: BuiltRun, progress: Progress, manager: PluginManager, echo=print):
    """Phase 3: train and evaluate each remaining experience, checkpointing as configured.

    Separate because this is where a run stops early: it turns an interrupt, a divergence or a
    third-party plugin's exception into a status and an outcome (what ``finish_run`` records and
    raises), and lets collapsebench's own errors through. Returns ``(status, outcome)``.
    """
    config, strategy, recorder, timing = run.config, run.strategy, run.recorder, progress.timing
    matrix, test_stream = progress.matrix, run.stream.benchmark.test_stream

    def timed(phase: str, call):
        """Run ``call``, adding its time to ``phase`` less the one-time gathering of tensors."""
        tick, gathered = time.perf_counter(), fastdata.gather_seconds
        value = call()
        data = fastdata.gather_seconds - gathered
        timing["data"] += data
        timing[phase] += time.perf_counter() - tick - data
        return value

    unsaved: list[dict[str, Any]] = []  # journal entries of the experiences since the last checkpoint
    cadence = checkpoint.Cadence(config.checkpoint_every, config.checkpoint_seconds)
    try:
        for experience in list(run.stream.benchmark.train_stream)[progress.done:]:
            if run.stream.reset_head_each_experience and experience.current_experience > 0:
                strategy.model.collapsebench_reset_head()
            first_record = len(recorder.records)
            timed("train", lambda: strategy.train(experience))
            columns = run.protocol.columns(experience.current_experience, run.n_experiences)
            cells = timed("evaluate", lambda: evaluate(strategy, run.evaluation, test_stream, columns))
            matrix.append(dense_row(cells, run.n_experiences))
            progress.online_accuracy.append(run.online.accuracy())
            run.progress_log.accuracy_row(cells)
            if run.board is not None:
                timed("figures", lambda: run.board.after_experience(matrix, recorder.records))
            unsaved.append({
                "experience": experience.current_experience, "cells": [[j, a] for j, a in cells.items()],
                "online_accuracy": progress.online_accuracy[-1], "records": recorder.records[first_record:],
            })
            if config.checkpoint and len(matrix) < run.n_experiences and cadence.due(len(matrix)):
                tick = time.perf_counter()
                journal_bytes = run.journal.append(unsaved)
                unsaved = []
                _save_checkpoint(strategy, run.run_dir, {
                    "experiences_done": len(matrix), "journal_bytes": journal_bytes,
                    "journal_digest": run.journal.digest, "config_identity": run.identity,
                    "evaluator_seconds": recorder.seconds, "timing": timing,
                    # Evaluators with memory (CKA's reference representations) keep it here.
                    "metric_states": [m.state_dict() if hasattr(m, "state_dict") else None for m in run.metrics],
                })
                timing["checkpoint"] += time.perf_counter() - tick
                cadence.saved()
    except KeyboardInterrupt:
        echo(f"\nInterrupted after {len(matrix)} of {run.n_experiences} experiences; writing a partial result.")
        return "partial", {}
    except TrainingDiverged as exc:
        echo(f"\n{str(exc).capitalize()}; writing the {len(matrix)} finished experience(s).")
        return "diverged", {"divergence": exc.record()}
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, what finished is kept
        # Whose code raised decides the message and the exit code (finish_run); in every case the
        # experiences that finished are written first, as for an interrupt or a divergence.
        import traceback

        progress.failure = exc
        owner = faults.culprit(exc, manager)
        for_the_user = isinstance(exc, CollapsebenchError)  # a message already, from a plugin or the host
        who = f"collapsebench plugin {owner!r}" if owner else "collapsebench"
        echo(f"\n{who} stopped the run before experience {len(matrix) + 1} finished; writing the {len(matrix)} "
             "finished experience(s).")
        return "failed", {"error": {
            "plugin": owner, "experience": len(matrix), "user_error": for_the_user,
            "message": str(exc) if for_the_user else f"{type(exc).__name__}: {exc}",
            "traceback": None if for_the_user else traceback.format_exc(),
        }}
    return "complete", {}


def finish_run(run: BuiltRun, progress: Progress, status: str, outcome: dict[str, Any],
               manager: PluginManager) -> dict[str, Any]:
    """Phase 4: write results.json (and model.pt), close the loggers, then raise for a run that stopped.

    Separate because it runs for every status, complete or not, with signals still held
    (``deferred_interrupts(hold=True)``) until the result is on disk; only after that does it
    turn a partial, diverged or failed status into the exception the CLI reports.
    """
    matrix, timing, recorder, run_dir = progress.matrix, progress.timing, run.recorder, run.run_dir
    # Evaluator metrics run inside train(): report their time apart from training.
    timing["evaluators"] = recorder.seconds
    timing["train"] -= recorder.seconds
    timing["total"] = time.perf_counter() - run.started
    complete = len(matrix) == run.n_experiences
    summaries = _summary(matrix, progress.online_accuracy, run.protocol, run.metrics) if complete else Summaries()
    result = {
        "schema_version": results_io.SCHEMA_VERSION,
        "status": status,
        "config": {**run.config.to_dict(), "resolved_options": run.options, "plugins": _plugin_versions(manager)},
        "environment": results_io.environment(),
        "stream": _stream_record(run.stream),
        "probe": run.probe.summary(),
        "taps": [{"name": t.name, "width": t.width} for t in taps_of(run.strategy.model)],
        "evaluation": {"protocol": run.protocol.name,
                       "measured_cells": run.protocol.measured_cells(run.n_experiences, len(matrix))},
        "accuracy_matrix": matrix,
        "online_accuracy": progress.online_accuracy,
        "summary": summaries.values,
        "summary_unavailable": summaries.unavailable,
        "summary_sources": summaries.sources,
        "metrics": recorder.records,
        "timing": timing,
    }
    result.update(outcome)
    if status == "complete":
        results_io.atomic_write_bytes(run_dir / "model.pt", _state_dict_bytes(run.strategy.model))
    try:
        results_io.write_json(run_dir / results_io.RESULTS_FILE, result, compact_rows=True)
    except OSError:
        if progress.failure is None:
            raise
        run.stopper.release()
        raise progress.failure from None  # the disk that failed the run cannot take its result either
    if status in ("complete", "diverged"):  # resuming a diverged run would only diverge again
        checkpoint.remove(run_dir)
        run.journal.remove()
    close_loggers(run.trackers, run.tensorboard)  # flush TensorBoard events (and every tracker) before anyone reads them
    manager.call_each("collapsebench_result_recorded", result=result, run_dir=run_dir)
    run.stopper.release()
    if status == "partial" or run.stopper.requested:
        raise run.stopper.interrupt()
    if status == "diverged":
        info = outcome["divergence"]
        raise Diverged(
            f"Training diverged in experience {info['experience'] + 1}, iteration {info['iteration']} "
            f"({'the loss' if info['cause'] == 'loss' else 'parameter ' + info['cause']} became NaN or infinite). "
            f"{run_dir / results_io.RESULTS_FILE} holds the {len(matrix)} finished experience(s) with "
            '"status": "diverged". A smaller --lr usually helps.'
        )
    if status == "failed":
        raise _failure(outcome["error"], progress.failure, run_dir, len(matrix))
    return result


def _failure(error: dict[str, Any], exc: BaseException, run_dir: Path, finished: int) -> BaseException:
    """What a failed run raises once its result is written (docs/reliability.md, exit codes).

    A CollapsebenchError keeps its message and exit code (2), with the plugin that raised it named;
    another exception from a plugin's code is that plugin's bug (exit 3, its traceback kept); one
    from collapsebench's own code is raised as it is (a traceback: collapsebench's bug; an OSError
    becomes the CLI's file message).
    """
    kept = (f"{run_dir / results_io.RESULTS_FILE} holds the {finished} finished experience(s) "
            f'with "status": "failed"')
    resume = f"collapsebench run --resume {run_dir}"
    if error["user_error"]:
        where = f"collapsebench plugin {error['plugin']!r} stopped the run" if error["plugin"] else "The run stopped"
        message = str(exc).rstrip()
        message += "" if message.endswith((".", "?", "!")) else "."
        failure = CollapsebenchError(f"{where} before experience {error['experience'] + 1} finished: {message} {kept}; "
                                     f"once that is fixed, continue with: {resume}", details=exc.details)
        failure.exit_code = exc.exit_code
        return failure
    if error["plugin"]:
        return PluginFailed(
            f"collapsebench plugin {error['plugin']!r} raised during training: {error['message']}. This is a bug "
            f"in that plugin; its traceback follows. {kept}, and a fixed plugin can continue with: {resume}",
            details=error["traceback"],
        )
    return exc


def build_loggers(config: RunConfig, registry: Registry, context) -> list[Any]:
    """The run's Avalanche loggers, one per name in ``config.loggers``, built by their plugins."""
    if len(set(config.loggers)) != len(config.loggers):
        raise CollapsebenchError(f"The logger list {config.loggers} names a logger twice.")
    built = []
    for name in config.loggers:
        options = registry.get("logger", name).resolve_options({})
        built.append(_call_factory(registry, "logger", name, context, **options))
    return built


def close_loggers(trackers: list[Any], tensorboard) -> None:
    if tensorboard is not None:
        tensorboard.close()  # Avalanche's TensorboardLogger has no close() of its own
    for tracker in trackers:
        close = getattr(tracker, "close", None)
        if callable(close):
            close()


def _save_checkpoint(strategy, run_dir: Path, progress: dict[str, Any]) -> None:
    """checkpoint.save, with a message when the file cannot be written.

    A full disk fails inside torch's zip writer as a RuntimeError ("unexpected pos"), not an OSError.
    """
    import shutil

    try:
        checkpoint.save(strategy, run_dir, progress)
    except (OSError, RuntimeError) as exc:
        free = shutil.disk_usage(run_dir).free
        hint = (f" Only {free / 2**20:.0f} MiB are free there: free space or choose another --out."
                if free < 256 * 2**20 else "")
        raise CollapsebenchError(
            f"The checkpoint could not be written in {run_dir} ({type(exc).__name__}: {exc}).{hint}"
        ) from None


def _check_device(device: str) -> None:
    """A device this machine has, checked before anything is built on it."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CollapsebenchError(f"--device {device}: this machine has no usable CUDA GPU "
                                     "(no driver, or torch built without CUDA). Use --device cpu.")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise CollapsebenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                     f"numbered from 0.")
    if device == "mps" and not torch.backends.mps.is_available():
        raise CollapsebenchError("--device mps: Apple's Metal backend is not available here. Use --device cpu.")


def _clear_run_dir(run_dir: Path, registry: Registry) -> None:
    """Remove what an earlier run left in ``run_dir`` (the CLI asked for --overwrite first): its
    result, its model, and every file any loaded logger declares (TensorBoard events, W&B, ...)."""
    import shutil

    for name in (results_io.RESULTS_FILE, "model.pt"):
        (run_dir / name).unlink(missing_ok=True)
    removed = [*eventfiles.event_files(run_dir), *registry.logger_outputs(run_dir)]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for folder in {path.parent for path in removed} - {run_dir}:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # an emptied per-run TensorBoard folder


def _check_resumed_identity(recorded: dict | None, current: dict, run_dir: Path) -> None:
    """Refuse to continue a checkpoint under a config other than the one that trained it."""
    if recorded is None or recorded == current:
        return  # None: a checkpoint written before identities were recorded
    differ = identity_differences(recorded, current)
    raise CollapsebenchError(
        f"{run_dir / checkpoint.CONFIG_FILE} no longer matches the config its checkpoint was trained with "
        f"(changed: {', '.join(differ)}). Undo the edit to resume, or start over with --overwrite."
    )


def _stream_record(stream: StreamData) -> dict[str, Any]:
    return {
        "description": stream.description,
        "scenario": stream.scenario,
        "n_experiences": len(stream.benchmark.train_stream),
        "input_shape": list(stream.input_shape),
        "n_classes": stream.n_classes,
        "fingerprint": stream.fingerprint,
        "classes_per_experience": _classes_per_experience(stream.benchmark.train_stream),
    }


def _summary(matrix, online_accuracy, protocol, metrics: list) -> Summaries:
    """Accuracy summaries, then whatever run-level values the evaluators add."""
    online = online_accuracy if all(a is not None for a in online_accuracy) else None
    summaries = accuracy_summaries(matrix, online, protocol.name)
    for metric in metrics:
        name = type(metric).__name__
        try:
            extra = metric.summarize(matrix) if hasattr(metric, "summarize") else {}
        except MissingCells as exc:
            raise CollapsebenchError(f"Evaluator metric {name} asked for accuracies that evaluation protocol "
                                     f"{protocol.name!r} does not measure: {exc}.") from None
        clashes = set(extra) & (set(summaries.values) | set(summaries.unavailable))
        if clashes:
            raise CollapsebenchError(f"Evaluator metric {name} would overwrite summary keys {sorted(clashes)}.")
        sources = dict(getattr(metric, "summary_sources", {}))
        summaries.add(extra, {key: sources.get(key, f"the records of evaluator metric {name} (metrics)") for key in extra},
                      getattr(metric, "summary_unavailable", {}))
    return summaries


def _state_dict_bytes(model) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _classes_per_experience(train_stream) -> list[list[int]]:
    classes = []
    for experience in train_stream:
        in_experience = getattr(experience, "classes_in_this_experience", None)
        classes.append(sorted(int(c) for c in in_experience) if in_experience is not None else [])
    return classes


def _plugin_versions(manager: PluginManager) -> list[dict[str, Any]]:
    return [
        {"name": info.name, "source": info.source, "location": info.location,
         "distribution": info.distribution, "version": info.version}
        for info in manager.info.values()
    ]
