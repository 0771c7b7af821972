"""An Avalanche logger that records a run in MLflow: its config as parameters, every scalar
metric value as an MLflow metric at Avalanche's step, and the run's end.

Avalanche 0.6.0 has no MLflow logger, hence this one. The store is ``$MLFLOW_TRACKING_URI``
when set (a server, a sqlite database), else a file store at ``<run dir>/mlruns``. MLflow 3
keeps file stores in maintenance mode and refuses them unless ``MLFLOW_ALLOW_FILE_STORE`` is
set; a local store needs no database package, so this logger sets it for the file store it
chose itself.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

EXPERIMENT_ENV = "COLLAPSEBENCH_MLFLOW_EXPERIMENT"
RUN_ID_FILE = "mlflow-run-id.txt"
#: MLflow's limit on a parameter value's length.
PARAM_LIMIT = 6000


def make_logger(run_dir: Path, config: dict[str, Any], run_name: str, resume: bool):
    from avalanche.logging import BaseLogger
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (run_dir / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=uri)
    name = os.environ.get(EXPERIMENT_ENV, "collapsebench")
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    id_file = run_dir / RUN_ID_FILE
    if resume and id_file.is_file():
        run_id = id_file.read_text().strip()
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
        id_file.write_text(run_id + "\n")
        params = [Param(key, str(value)[:PARAM_LIMIT]) for key, value in _flat(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            client.log_batch(run_id, params=params[start:start + 100])

    class MLflowLogger(BaseLogger):
        """Scalar values go to MLflow in batches, one per experience and one at the end."""

        def __init__(self):
            super().__init__()
            self.client, self.run_id, self.pending = client, run_id, []

        def log_single_metric(self, name, value, x_plot):
            if hasattr(value, "best_supported_value"):  # Avalanche's AlternativeValues
                value = value.best_supported_value(float, int)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                import time

                self.pending.append(Metric(name, float(value), int(time.time() * 1000), int(x_plot)))

        def after_eval(self, strategy, metric_values, **kwargs):
            self.flush()  # Avalanche has handed this logger the evaluation's values already

        def flush(self):
            for start in range(0, len(self.pending), 1000):  # MLflow's batch limit
                self.client.log_batch(self.run_id, metrics=self.pending[start:start + 1000])
            self.pending = []

        def close(self):
            self.flush()
            self.client.set_terminated(self.run_id)

    return MLflowLogger()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: MLflow parameters are flat strings."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
