"""Built-in experiment trackers: TensorBoard (the default), CSV files, Weights & Biases and MLflow.

Each is an Avalanche logger handed to the run through ``collapsebench_loggers``; a run picks
them with ``--logger tensorboard,csv,wandb,mlflow`` (config key ``loggers``). Avalanche and the
tracker's own package are imported only when a run builds the logger, so listing them stays
instant and a tracker that is not installed fails only the run that asks for it.
"""

from __future__ import annotations

import os

from collapsebench import CollapsebenchError, Logger, LoggerContext, hookimpl

#: W&B project of a run unless the environment names one (W&B's own WANDB_PROJECT wins too).
WANDB_PROJECT_ENV = "COLLAPSEBENCH_WANDB_PROJECT"
WANDB_ID_FILE = "wandb-run-id.txt"


def run_label(context: LoggerContext) -> str:
    """A readable name for a run in a tracker's list of runs: its directory relative to runs/."""
    parts = context.run_dir.resolve().parts
    tail = parts[parts.index("runs") + 1:] if "runs" in parts[:-1] else parts[-2:]
    return "/".join(tail) or context.run_dir.name


def _tensorboard(context: LoggerContext):
    from avalanche.logging import TensorboardLogger

    return TensorboardLogger(context.tensorboard_dir)


def _csv(context: LoggerContext):
    from avalanche.logging import CSVLogger

    class ClosingCSVLogger(CSVLogger):
        """Avalanche's CSVLogger; the run closes it, so its two files are complete on disk."""

    return ClosingCSVLogger(log_folder=str(context.run_dir / "csv"))


def _wandb(context: LoggerContext):
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise CollapsebenchError("The wandb logger needs the wandb package: pip install wandb.")
    from avalanche.logging import WandBLogger

    class FinishingWandBLogger(WandBLogger):
        """Avalanche's WandBLogger, finished when the run ends so the offline run directory is complete."""

        def import_wandb(self):
            super().import_wandb()
            self.wandb = _WandbAsAvalancheKnowsIt(self.wandb)

        def close(self):
            self.wandb.finish()

    project = os.environ.get("WANDB_PROJECT") or os.environ.get(WANDB_PROJECT_ENV, "collapsebench")
    params = {"id": _wandb_run_id(context)}
    if context.resume:
        params["resume"] = "allow"  # the same W&B run continues instead of a second one
    return FinishingWandBLogger(
        project_name=project, run_name=run_label(context), dir=str(context.run_dir), save_code=False,
        config=context.config.to_dict(), params=params,
    )


class _WandbAsAvalancheKnowsIt:
    """The wandb module, plus the one name Avalanche 0.6.0 reads that newer wandb moved.

    Avalanche checks every value against ``wandb.viz.CustomChart``; wandb 0.19 and later keep
    that class in ``wandb.plot``. Everything else is the module itself.
    """

    def __init__(self, module):
        import types

        self._module = module
        chart = getattr(getattr(module, "viz", None), "CustomChart", None) or module.plot.CustomChart
        self.viz = types.SimpleNamespace(CustomChart=chart)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _wandb_run_id(context: LoggerContext) -> str:
    """The run's W&B id, kept in the run directory so that a resumed run continues the same W&B run.

    Given explicitly because Avalanche 0.6.0 asks ``wandb.util.generate_id``, which newer wandb
    releases no longer have.
    """
    import secrets

    path = context.run_dir / WANDB_ID_FILE
    if context.resume and path.is_file():
        return path.read_text().strip()
    run_id = os.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
    path.write_text(run_id + "\n")
    return run_id


def _mlflow(context: LoggerContext):
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise CollapsebenchError("The mlflow logger needs MLflow: uv sync --extra mlflow (or pip install mlflow-skinny).")
    from .mlflow_store import make_logger

    return make_logger(context.run_dir, context.config.to_dict(), run_label(context), context.resume)


@hookimpl
def collapsebench_loggers():
    return [
        # Event files lie in a folder named after the run (runs from before it: in the run directory).
        Logger("tensorboard", "TensorBoard event files in <run dir>/<run name>/ (the default)", _tensorboard,
               outputs=("events.out.tfevents.*", "*/events.out.tfevents.*")),
        Logger("csv", "Avalanche's CSVLogger: csv/training_results.csv and csv/eval_results.csv", _csv,
               outputs=("csv",)),
        Logger("wandb", "Weights & Biases through Avalanche's WandBLogger (WANDB_MODE=offline works)", _wandb,
               outputs=("wandb", WANDB_ID_FILE)),
        Logger("mlflow", "an MLflow run: $MLFLOW_TRACKING_URI, else a file store in the run directory", _mlflow,
               outputs=("mlruns", "mlflow-run-id.txt")),
    ]
