"""The host keeps its hook contracts: every hook exercised by a plugin, in the documented order,
through pluggy, with switches to leave plugins out and to trace the calls.

Tests named ``test_hook_<hook>_...`` are the behaviour tests that the meta-test
``test_plugin_hooks_have_tests`` looks for, one per hookspec at least.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from collapsebench import hookspecs
from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.registry import Registry
from conftest import REPO

HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("collapsebench_"))
DOC = REPO / "docs" / "plugin_hooks.md"

#: A third-party collapsebench plugin implementing every hook, written to a file by the tests.
HOOK_PLUGIN = '''
import json
from pathlib import Path

from collapsebench import (
    Architecture, Evaluator, Option, Strategy, StrategyParts, Stream, Tap, hookimpl,
)

CALLS = {"configure_run": [], "result_recorded": [], "strategy_tag": [], "epochs_trained": 0}


@hookimpl
def collapsebench_configure_run(config):
    CALLS["configure_run"].append((config.epochs, dict(config.strategy_options)))
    if config.strategy == "hookspy":
        config.epochs = 1
        config.strategy_options.setdefault("hookspy", {})["tag"] = 7


@hookimpl
def collapsebench_result_recorded(result, run_dir):
    CALLS["result_recorded"].append((result["status"], (run_dir / "results.json").is_file()))
    (run_dir / "seen_by_plugin.json").write_text(json.dumps({"epochs": result["config"]["epochs"]}))


def _spy(context, tag):
    from avalanche.core import SupervisedPlugin

    CALLS["strategy_tag"].append(tag)

    class CountEpochs(SupervisedPlugin):
        def after_training_epoch(self, strategy, **kwargs):
            CALLS["epochs_trained"] += 1

    return StrategyParts(plugins=[CountEpochs()])


@hookimpl
def collapsebench_strategies():
    return [Strategy("hookspy", "records what the build received", _spy,
                     options=(Option("tag", 0, "a value that configure_run changes"),))]


def _head_resetting(context):
    stream = context.build_stream("split-digits", context, {})
    stream.reset_head_each_experience = True
    stream.description = "split-digits, output layer reset at every experience"
    return stream


@hookimpl
def collapsebench_streams():
    return [Stream("hookstream", "split-digits whose output layer resets", _head_resetting, scenarios=("class",))]


def _headless(input_shape, n_classes, multihead):
    import torch
    from torch import nn

    class Headless(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(int(torch.tensor(input_shape).prod()), 8)
            self.act = nn.ReLU()
            self.out = nn.Linear(8, n_classes)

        def forward(self, x):
            return self.out(self.act(self.hidden(x.flatten(1))))

        def collapsebench_taps(self):
            return [Tap("hidden", self.act, (self.hidden.weight,), self.hidden, self.out, width=8)]

    return Headless()


@hookimpl
def collapsebench_architectures():
    return [Architecture("headless", "an MLP without collapsebench_reset_head()", _headless)]


def _norm(context):
    import torch

    from collapsebench import CollapseMetric, Measurement

    class OutputNorm(CollapseMetric):
        def measure(self, strategy, phase):
            norm = sum(float(torch.linalg.norm(p.detach())) ** 2 for p in strategy.model.parameters()) ** 0.5
            yield Measurement("hook_norm", "model", "all", norm)

        def summarize(self, accuracy_matrix):
            values = self.recorder.series("hook_norm", "model", "all")
            return {"hook_norm_last": values[-1]} if values else {}

    return [OutputNorm(context.recorder)]


@hookimpl
def collapsebench_evaluators():
    return [Evaluator("hook_norm", "the parameters' norm after each experience", _norm)]


@hookimpl
def collapsebench_track_dirs():
    return [Path(__file__).parent / "hook_tracks"]
'''

TRACK = '''
[track]
description = "the hook plugin's own track"
seeds = [4, 5]

[run]
stream = "hookstream"
model = "mlp"
epochs = 2
'''


@pytest.fixture(scope="module")
def hook_plugin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hookplugin")
    (folder / "hook_tracks").mkdir()
    (folder / "hook_tracks" / "hook-track.toml").write_text(TRACK)
    path = folder / "hookplugin.py"
    path.write_text(HOOK_PLUGIN)
    return path


@pytest.fixture(scope="module")
def hooked_run(hook_plugin):
    """One run of the plugin's strategy on its stream, with its evaluator; what its hooks saw."""
    from collapsebench.cli import main

    run_dir = hook_plugin.parent / "run"
    code = main(["run", "--plugin", str(hook_plugin), "--stream", "hookstream", "--strategy", "hookspy",
                 "--evaluators", "hook_norm", "--epochs", "3", "--probe-size", "100", "--out", str(run_dir)])
    assert code == 0
    calls = sys.modules["collapsebench_user_plugin_hookplugin"].CALLS
    return run_dir, json.loads((run_dir / "results.json").read_text()), calls


# --- every hook with real behaviour --------------------------------------------------------


def test_hook_configure_run_changes_what_is_built(hooked_run):
    run_dir, result, calls = hooked_run
    assert calls["configure_run"] == [(3, {})]  # it saw the config as given...
    assert result["config"]["epochs"] == 1  # ...and its change is what was recorded
    assert result["config"]["resolved_options"]["strategy"]["hookspy"] == {"tag": 7}
    assert calls["strategy_tag"] == [7]  # the factory got the adjusted option
    assert calls["epochs_trained"] == len(result["accuracy_matrix"]) == 5  # one epoch per experience


def test_hook_result_recorded_sees_the_written_result(hooked_run):
    run_dir, result, calls = hooked_run
    assert calls["result_recorded"] == [("complete", True)]
    assert json.loads((run_dir / "seen_by_plugin.json").read_text()) == {"epochs": 1}


def test_hook_strategies_provide_an_avalanche_training_plugin(hooked_run):
    _, result, calls = hooked_run
    assert result["config"]["strategy"] == "hookspy" and calls["epochs_trained"] == 5


def test_hook_streams_provide_a_wrapped_stream(hooked_run):
    _, result, _ = hooked_run
    assert result["config"]["stream"] == "hookstream"
    assert result["stream"]["description"] == "split-digits, output layer reset at every experience"
    assert result["stream"]["n_experiences"] == 5


def test_hook_evaluators_record_and_summarize(hooked_run):
    _, result, _ = hooked_run
    norms = [r for r in result["metrics"] if r["name"] == "hook_norm"]
    assert [r["experience"] for r in norms] == [0, 1, 2, 3, 4]
    assert all(r["value"] > 0 for r in norms)
    assert result["summary"]["hook_norm_last"] == norms[-1]["value"]


def test_hook_architectures_without_reset_head_fail_at_build(hook_plugin, cli, tmp_path):
    from collapsebench.config import build_config
    from collapsebench.records import StreamData
    from collapsebench.runner import build_model

    registry = Registry(build_manager([str(hook_plugin)]))
    config = build_config({"model": "headless", "stream": "hookstream"})
    plain = StreamData(benchmark=None, input_shape=(1, 8, 8), n_classes=10, scenario="class", fingerprint="-")
    model = build_model(config, registry, plain, {})
    assert type(model).__name__ == "Headless"
    resetting = StreamData(benchmark=None, input_shape=(1, 8, 8), n_classes=10, scenario="class", fingerprint="-",
                           reset_head_each_experience=True)
    with pytest.raises(CollapsebenchError, match=r"'headless' \(from collapsebench plugin 'hookplugin'\) has no "
                                                 r"collapsebench_reset_head\(\)"):
        build_model(config, registry, resetting, {})
    # Through the CLI: a clear message and exit 2, before any training.
    code, out, err = cli("run", "--plugin", hook_plugin, "--stream", "hookstream", "--model", "headless",
                         "--evaluators", "", "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and "collapsebench_reset_head" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "results.json").exists()


def test_hook_track_dirs_add_a_track(hook_plugin, cli):
    from collapsebench.tracks import get_track

    track = get_track(build_manager([str(hook_plugin)]), "hook-track")
    assert track.seeds == (4, 5) and track.config["stream"] == "hookstream"
    code, out, err = cli("list", "tracks", "--plugin", hook_plugin)
    assert code == 0 and "hook-track" in out


# --- how hooks are called ----------------------------------------------------------------------


def _plugin_file(folder, name, body):
    path = folder / f"{name}.py"
    path.write_text("from collapsebench import Strategy, StrategyParts, hookimpl\n" + textwrap.dedent(body))
    return str(path)


def _strategy_plugin(folder, name, marker="@hookimpl"):
    return _plugin_file(folder, name, f"""
        {marker}
        def collapsebench_strategies():
            return [Strategy("{name}", "from {name}", lambda context: StrategyParts())]
    """)


def test_call_order_is_documented_pluggy_order(tmp_path):
    first = _strategy_plugin(tmp_path, "loaded_first")
    second = _strategy_plugin(tmp_path, "loaded_second")
    eager = _strategy_plugin(tmp_path, "eager", "@hookimpl(tryfirst=True)")
    late = _strategy_plugin(tmp_path, "late", "@hookimpl(trylast=True)")
    manager = build_manager([late, first, second, eager])
    order = [name for name, _ in manager.call_each("collapsebench_strategies")]
    assert order == ["eager", "loaded_second", "loaded_first", "builtin_strategies", "late"]
    # The same order as pluggy's own call of the hook.
    direct = [records[0].name for records in manager.hook.collapsebench_strategies()]
    assert direct[:3] == ["eager", "loaded_second", "loaded_first"] and direct[-1] == "late"
    assert "plugins are called" in DOC.read_text() and "last loaded" in DOC.read_text()


@pytest.mark.parametrize("marker", ["@hookimpl(wrapper=True)", "@hookimpl(hookwrapper=True)"])
def test_hook_wrappers_are_rejected_with_a_clear_message(tmp_path, marker):
    path = _plugin_file(tmp_path, "wrapping", f"""
        {marker}
        def collapsebench_strategies():
            result = yield
            return result
    """)
    with pytest.raises(CollapsebenchError, match="'wrapping'.*collapsebench_strategies as a hook wrapper"):
        build_manager([path])


def test_calls_go_through_pluggy_monitoring_one_plugin_at_a_time():
    manager = build_manager()
    seen = []
    undo = manager.add_hookcall_monitoring(
        lambda name, impls, kwargs: seen.append((name, [impl.plugin_name for impl in impls])),
        lambda outcome, name, impls, kwargs: None,
    )
    Registry(manager)
    undo()
    assert ("collapsebench_strategies", ["builtin_strategies"]) in seen
    assert ("collapsebench_streams", ["builtin_streams"]) in seen
    assert all(len(plugins) == 1 for _, plugins in seen)


def test_a_failing_hook_names_its_plugin(tmp_path):
    path = _plugin_file(tmp_path, "raising", """
        @hookimpl
        def collapsebench_strategies():
            raise RuntimeError("boom")
    """)
    with pytest.raises(CollapsebenchError, match=r"plugin 'raising' failed in collapsebench_strategies\(\): RuntimeError: boom"):
        Registry(build_manager([path]))


def test_trace_prints_each_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("COLLAPSEBENCH_TRACE_PLUGINS", "1")
    Registry(build_manager())
    err = capsys.readouterr().err
    assert "collapsebench trace: collapsebench_strategies() -> builtin_strategies" in err
    assert re.search(r"collapsebench trace: collapsebench_strategies returned \d+: naive, .* ms\)", err)
    monkeypatch.setenv("COLLAPSEBENCH_TRACE_PLUGINS", "0")
    Registry(build_manager())
    assert "trace" not in capsys.readouterr().err


# --- switching plugins off ---------------------------------------------------------------------


def test_disable_plugin_leaves_it_out(cli):
    manager = build_manager(["no:builtin_evaluators"])
    assert "builtin_evaluators" not in manager.info and "builtin_streams" in manager.info
    assert Registry(manager).names("evaluator") == []
    code, out, err = cli("plugins", "--json", "--disable-plugin", "builtin_tracks", "-p", "no:builtin_evaluators")
    assert code == 0, err
    assert {row["name"] for row in json.loads(out)} == {"builtin_architectures", "builtin_strategies", "builtin_streams",
                                                        "builtin_loggers"}


def test_disabling_an_unknown_plugin_is_explained(cli):
    code, out, err = cli("plugins", "--disable-plugin", "builtin_strategis")
    assert code == 2
    assert "Cannot disable 'builtin_strategis'" in err and "builtin_strategies" in err


def _broken_distribution(tmp_path):
    (tmp_path / "broken_cb.py").write_text("raise ImportError('this third-party plugin is broken')\n")
    dist_info = tmp_path / "broken_cb-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-cb\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[collapsebench]\nbroken = broken_cb\n")


def _plugins_command(tmp_path, *args, **env):
    result = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "plugins", "--json", *args],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(tmp_path), **env},
    )
    return result.returncode, result.stdout, result.stderr


def test_autoload_switch_skips_third_party_entry_points(tmp_path):
    _broken_distribution(tmp_path)
    code, out, err = _plugins_command(tmp_path)
    assert code == 2 and "'broken'" in err and "this third-party plugin is broken" in err
    code, out, err = _plugins_command(tmp_path, COLLAPSEBENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert code == 0, err
    names = {row["name"] for row in json.loads(out)}
    assert "broken" not in names and {"builtin_strategies", "builtin_streams"} <= names
    # Named explicitly, it still loads (and here fails, naming itself).
    code, out, err = _plugins_command(tmp_path, "-p", "broken", COLLAPSEBENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert code == 2 and "'broken'" in err
    code, out, err = _plugins_command(tmp_path, "-p", "no:broken")
    assert code == 0, err


# --- meta-tests: every hook documented and tested ---------------------------------------------


def _documented_hooks() -> dict[str, list[str]]:
    """``### `collapsebench_x(a, b)` `` headings of docs/plugin_hooks.md -> parameter names."""
    found = {}
    for name, params in re.findall(r"^### `(collapsebench_\w+)\(([^)]*)\)", DOC.read_text(), flags=re.M):
        found[name] = [p.split(":")[0].strip() for p in params.split(",") if p.strip()]
    return found


def test_plugin_hooks_are_documented():
    documented = _documented_hooks()
    assert sorted(documented) == HOOKS
    for name in HOOKS:
        expected = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert documented[name] == expected, f"docs/plugin_hooks.md gives {name} the wrong parameters"
    sections = re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]
    for section in sections:
        name = section.split("(")[0].strip("`")
        assert "**When:**" in section and "**May:**" in section, f"{name}: say when it is called and what it may do"
        assert re.search(rf"```python\n.*@hookimpl.*def {name}\(", section, flags=re.S), f"{name}: give an example"


def test_plugin_hooks_have_tests():
    tests = {}
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                tests.setdefault(path, []).append(node.name)
    for name in HOOKS:
        short = name.removeprefix("collapsebench_")
        holders = [path for path, names in tests.items() if any(n.startswith(f"test_hook_{short}_") for n in names)]
        assert holders, f"no test_hook_{short}_* test exercises {name}"
        assert any(f"def {name}(" in path.read_text() for path in holders), f"no test plugin implements {name}"
