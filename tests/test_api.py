"""collapsebench.run / load_run / RunResult: the Python API and its README example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
import warnings

import pytest

import collapsebench
from collapsebench import api
from collapsebench.errors import CollapsebenchError
from conftest import REPO

#: After the README example: a second run in the same process must import nothing heavy.
SECOND_CALL = """
import json, sys
before = set(sys.modules)
second = collapsebench.run(epochs=1, evaluators=[], probe_size=50, out="runs/second", echo=None)
new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("torch", "avalanche", "sklearn", "scipy"))
print(json.dumps({"status": second.status, "new_heavy_modules": new}))
"""


def test_readme_api_example_runs_and_a_second_call_imports_nothing_heavy(tmp_path):
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example-api: (\S+) -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "the README must carry the Python API example"
    script = tmp_path / match.group(1)
    script.write_text("import sys\nimport collapsebench\nassert 'torch' not in sys.modules\n"
                      + match.group(2) + SECOND_CALL)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLLAPSEBENCH_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": "complete", "new_heavy_modules": []}
    assert "complete" in done.stdout and "Warning" not in done.stderr
    result = json.loads((tmp_path / "runs" / "notebook-replay" / "results.json").read_text())
    assert result["config"]["strategy"] == "replay" and result["config"]["epochs"] == 2


INTERRUPT_ONCE = """
import os
from collapsebench import Strategy, StrategyParts, hookimpl


def _build(context):
    from avalanche.core import SupervisedPlugin

    class PressCtrlCOnce(SupervisedPlugin):
        def after_training_exp(self, strategy, **kwargs):
            if strategy.experience.current_experience == 1 and os.environ.pop("COLLAPSEBENCH_TEST_INTERRUPT", None):
                raise KeyboardInterrupt

    return StrategyParts(plugins=[PressCtrlCOnce()])


@hookimpl
def collapsebench_strategies():
    return [Strategy("interrupt_once", "Ctrl-C after experience 2 while COLLAPSEBENCH_TEST_INTERRUPT is set", _build)]
"""


def test_run_and_load_run_agree_and_resume_prints_no_avalanche_chatter(tmp_path, capsys, monkeypatch):
    out, plugin = tmp_path / "run", tmp_path / "interrupt_once.py"
    plugin.write_text(INTERRUPT_ONCE)
    monkeypatch.setenv("COLLAPSEBENCH_TEST_INTERRUPT", "1")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            collapsebench.run({"strategy": "interrupt_once", "epochs": 1}, probe_size=50, evaluators=[],
                              plugins=[str(plugin)], out=str(out), echo=None, threads=1)
        assert torch.get_num_threads() == 2  # the run's one thread was the run's only, even when interrupted
    finally:
        torch.set_num_threads(threads)
    assert collapsebench.load_run(out).status == "partial"
    lines = []
    resumed = collapsebench.run(resume=out, echo=lines.append)
    captured = capsys.readouterr()
    assert "Mapping" not in captured.out and "Mapping" not in "\n".join(lines)
    assert any("Resuming after experience" in line for line in lines)
    assert isinstance(resumed, api.RunResult) and resumed.status == "complete"
    assert resumed.run_dir == out
    loaded = collapsebench.load_run(out)
    assert dict(loaded) == dict(resumed) == json.loads((out / "results.json").read_text())
    assert len(loaded.accuracy_matrix) == 5 and loaded["config"]["strategy"] == "interrupt_once"
    torch.set_num_threads(3)
    try:
        again = collapsebench.run(resume=out, echo=lines.append)  # complete: answered without training
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert again.accuracy_matrix == loaded.accuracy_matrix and "already complete" in lines[-1]


def test_keywords_win_and_option_tables_merge():
    merged = api._merge({"epochs": 3, "strategy_options": {"replay": {"mem_size": 5, "batch": 2}},
                         "model_options": {"widths": [4]}},
                        {"epochs": 1, "strategy_options": {"replay": {"mem_size": 9}}, "model_options": {"act": "relu"}})
    assert merged == {"epochs": 1, "strategy_options": {"replay": {"mem_size": 9, "batch": 2}},
                      "model_options": {"widths": [4], "act": "relu"}}


def test_bad_config_fails_with_a_message_before_training(tmp_path):
    with pytest.raises(CollapsebenchError, match="no_such_key"):
        collapsebench.run(no_such_key=1)
    with pytest.raises(CollapsebenchError, match="MNIST"):
        collapsebench.run({"stream": "split-mnist", "data_root": str(tmp_path)}, out=str(tmp_path / "r"))
    with pytest.raises(CollapsebenchError, match="exactly as it was configured"):
        collapsebench.run({"epochs": 1}, resume=tmp_path)
    with pytest.raises(CollapsebenchError, match="not a finished collapsebench run"):
        collapsebench.load_run(tmp_path)


def test_metrics_frame_uses_pandas_when_present(monkeypatch, tmp_path):
    records = [{"name": "erank", "layer": "fc1", "value": 3.0}, {"name": "dead_units", "layer": "fc1", "value": 0.0}]
    result = api.RunResult(tmp_path, {"status": "complete", "metrics": records})
    fake = types.ModuleType("pandas")
    fake.DataFrame = types.SimpleNamespace(from_records=lambda rows: ("frame", list(rows)))
    monkeypatch.setitem(sys.modules, "pandas", fake)
    assert result.metrics_frame() == ("frame", records)
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas looks like
    with pytest.raises(ImportError, match="pip install pandas"):
        result.metrics_frame()


def test_avalanche_deprecation_warnings_hidden_unless_asked(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", [])
    monkeypatch.delenv(api.SHOW_WARNINGS_ENV, raising=False)
    inside = os.path.join(os.sep, "venv", "lib", "site-packages", "avalanche", "training", "plugins", "replay.py")

    def warn_as_avalanche_does():
        with warnings.catch_warnings():  # Avalanche's @deprecated forces "always" around its warning
            warnings.simplefilter("always")
            warnings.warn_explicit("Call to deprecated function update", DeprecationWarning, inside, 123)
        warnings.warn("the user's own deprecation", DeprecationWarning)

    for show, expected in ((False, ["the user's own deprecation"]),
                           (True, ["Call to deprecated function update", "the user's own deprecation"])):
        seen = []
        monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: seen.append(str(message)))
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            with api.quiet_dependency_warnings(show):
                warn_as_avalanche_does()
        assert seen == expected
