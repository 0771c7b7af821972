"""The plugin manager and registry: loading, listing, and every error a plugin author can meet."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest

from collapsebench import hookspecs
from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.registry import KINDS, Registry
from conftest import FIXTURE_PLUGINS, REPO

BUILTIN_ENTRY_POINTS = {"builtin_architectures", "builtin_strategies", "builtin_streams", "builtin_evaluators"}


def test_default_plugins_load_through_entry_points():
    manager = build_manager()
    assert BUILTIN_ENTRY_POINTS <= set(manager.info)
    for name in BUILTIN_ENTRY_POINTS:
        assert manager.info[name].source == "entry point"
        assert manager.info[name].distribution == "collapsebench"
    registry = Registry(manager)
    assert "split-digits" in registry.names("stream")
    assert {"naive", "lwf", "replay", "ewc"} <= set(registry.names("strategy"))
    assert "mlp" in registry.names("architecture")
    assert "erank" in registry.names("evaluator")


def test_every_hook_spec_is_documented_and_prefixed():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("collapsebench_")]
    assert len(specs) >= 7
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc.splitlines()) == 1, f"{name} needs one docstring line"


def test_wildcard_listing():
    registry = Registry(build_manager())
    assert registry.names("stream", "split-*") == [n for n in registry.names("stream") if n.startswith("split-")]
    assert registry.names("strategy", "nothing-*") == []


def test_plugin_from_file_adds_a_strategy(tmp_path):
    path = tmp_path / "extra.py"
    path.write_text(textwrap.dedent("""
        from collapsebench import Strategy, StrategyParts, hookimpl

        @hookimpl
        def collapsebench_strategies():
            return [Strategy("extra", "an extra strategy", lambda context: StrategyParts())]
    """))
    manager = build_manager([str(path)])
    assert manager.info["extra"].source == "file"
    assert Registry(manager).entry("strategy", "extra").plugin == "extra"


def test_plugin_by_module_name(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    manager = build_manager(["failing_factory"])
    assert manager.info["failing_factory"].source == "module"
    assert "exploding" in Registry(manager).names("strategy")


def test_plugin_from_installed_entry_point(tmp_path):
    """A third-party distribution's entry point loads like the built-ins (in a fresh interpreter)."""
    package = tmp_path / "thirdparty_cb.py"
    package.write_text(textwrap.dedent("""
        from collapsebench import Strategy, StrategyParts, hookimpl

        @hookimpl
        def collapsebench_strategies():
            return [Strategy("thirdparty", "from an installed distribution", lambda context: StrategyParts())]
    """))
    dist_info = tmp_path / "thirdparty_cb-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-cb\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text("[collapsebench]\nthirdparty = thirdparty_cb\n")
    code = subprocess.run(
        [sys.executable, "-m", "collapsebench.cli", "plugins", "--json"],
        capture_output=True, text=True, cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert code.returncode == 0, code.stderr
    rows = {row["name"]: row for row in json.loads(code.stdout)}
    assert rows["thirdparty"]["distribution"] == "thirdparty-cb"
    assert rows["thirdparty"]["version"] == "1.2.3"
    assert rows["thirdparty"]["provides"] == {"strategy": ["thirdparty"]}


def test_unknown_name_lists_choices_and_closest_match():
    registry = Registry(build_manager())
    with pytest.raises(CollapsebenchError) as info:
        registry.get("strategy", "replya")
    message = str(info.value)
    assert "Did you mean 'replay'?" in message
    for name in ("naive", "lwf", "replay", "ewc"):
        assert name in message


def test_import_failure_names_plugin_and_keeps_traceback(cli):
    code, out, err = cli("list", "--plugin", FIXTURE_PLUGINS / "broken_import.py")
    assert code == 2
    assert "'broken_import'" in err and "failed to import" in err
    assert "Traceback" in err and "collapsebench_this_module_does_not_exist" in err


def test_conflict_names_both_providers(cli):
    code, out, err = cli("list", "--plugin", FIXTURE_PLUGINS / "conflicting_stream.py")
    assert code == 2
    assert "'builtin_streams'" in err and "'conflicting_stream'" in err and "split-digits" in err


def test_wrong_signature_rejected_by_pluggy(cli):
    code, out, err = cli("plugins", "--plugin", FIXTURE_PLUGINS / "bad_signature.py")
    assert code == 2
    assert "'bad_signature'" in err and "verbose" in err


def test_misspelled_hook_rejected(cli):
    code, out, err = cli("plugins", "--plugin", FIXTURE_PLUGINS / "unknown_hook.py")
    assert code == 2
    assert "collapsebench_strategys" in err and "'unknown_hook'" in err


def test_wrong_record_type_names_plugin(cli):
    code, out, err = cli("list", "--plugin", FIXTURE_PLUGINS / "wrong_record.py")
    assert code == 2
    assert "'wrong_record'" in err and "Strategy records" in err


def test_missing_plugin_spec_is_explained(cli):
    code, out, err = cli("list", "--plugin", "no_such_plugin_anywhere")
    assert code == 2
    assert "neither an installed collapsebench entry point" in err


def test_plugins_command_lists_versions_and_provisions(cli):
    code, out, err = cli("plugins", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["builtin_strategies"]["version"]
    assert "naive" in rows["builtin_strategies"]["provides"]["strategy"]
    code, table, err = cli("plugins")
    assert "builtin_streams" in table and "split-digits" in table


def test_list_shows_descriptions_and_stream_default_scenario(cli):
    code, out, err = cli("list", "streams")
    assert code == 0
    assert "split-digits [class|task]" in out
    code, out, err = cli("list", "strategies", "--details", "--json")
    strategies = {s["name"]: s for s in json.loads(out)["strategies"]}
    assert {"name": "mem_size", "default": 2000} .items() <= strategies["replay"]["options"][0].items()


def test_list_details_shows_each_option_s_type_default_bounds_and_choices(cli, tmp_path, monkeypatch):
    plugin = tmp_path / "bounded_plugin.py"
    plugin.write_text(textwrap.dedent("""
        from collapsebench import Option, Strategy, StrategyParts, hookimpl

        @hookimpl
        def collapsebench_strategies():
            return [Strategy("bounded", "options with bounds", lambda context, **o: StrategyParts(), options=(
                Option("lr", 0.1, "step size", minimum=0.0),
                Option("fraction", 0.5, "share kept", minimum=0.0, maximum=1.0),
                Option("cap", 8, "most items", maximum=64),
                Option("mode", "a", "how", choices=("a", "b")),
                Option("seed", None, "a seed of its own", type=int, minimum=0),
            ))]
    """))
    monkeypatch.setenv("COLUMNS", "400")  # one line per option, not wrapped
    code, out, err = cli("list", "strategies", "bounded", "--details", "-p", plugin)
    assert code == 0, err
    lines = [line.split("bounded_plugin", 1)[1].strip() if "bounded_plugin" in line else line.strip()
             for line in out.splitlines()[3:]]
    assert lines == ["lr: float, default 0.1, >= 0: step size",
                     "fraction: float, default 0.5, 0..1: share kept",
                     "cap: int, default 8, <= 64: most items",
                     "mode: str, default 'a', one of a|b: how",
                     "seed: int, default None, >= 0: a seed of its own"]
    code, out, err = cli("list", "strategies", "bounded", "--details", "--json", "-p", plugin)
    options = {o["name"]: o for o in json.loads(out)["strategies"][0]["options"]}
    assert (options["fraction"]["minimum"], options["fraction"]["maximum"], options["fraction"]["type"]) == (0.0, 1.0, "float")
    assert "maximum" not in options["lr"] and "minimum" not in options["cap"] and options["seed"]["type"] == "int"


def test_fast_commands_do_not_import_avalanche_or_torch():
    """--help, list and plugins must stay instant: no Avalanche (13 s) or torch (3 s) import."""
    probe = (
        "import sys; from collapsebench.cli import main;"
        "[main(a) for a in (['list'], ['plugins'])];"
        "print(sorted(m for m in ('avalanche', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_registry_kinds_match_provider_hooks():
    for hook_name, record_type in KINDS.values():
        assert hasattr(hookspecs, hook_name)
