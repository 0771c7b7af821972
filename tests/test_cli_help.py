"""`--version` and `run --help`: a description, examples and every default, read from RunConfig."""

import subprocess
import sys

from collapsebench import __version__
from collapsebench.cli import build_parser
from collapsebench.config import RunConfig


def _run_parser():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["run"]


def test_version():
    code = "from collapsebench.cli import main; main(['--version'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"collapsebench {__version__}"


def test_run_help_shows_every_default_of_the_config():
    run = _run_parser()
    defaults = RunConfig()
    checked = 0
    for action in run._actions:
        if not hasattr(defaults, action.dest) or action.dest in ("data_root", "plugins"):
            continue
        value = getattr(defaults, action.dest)
        if value is None or isinstance(value, bool):
            continue
        shown = ",".join(value) if isinstance(value, list) else str(value)
        assert action.help and shown in action.help, (action.dest, action.help)
        checked += 1
    assert checked >= 12
    text = run.format_help()
    assert "SGD momentum (default 0.9)" in " ".join(text.split())
    assert "examples:" in text and "--resume" in text and "Train a strategy" in text


def test_plugins_lists_the_tracks_a_plugin_provides(capsys):
    import json

    from collapsebench.cli import main

    assert main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert "split-digits-mlp" in rows["builtin_tracks"]["provides"]["track"]
    assert main(["plugins"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("builtin_tracks"))
    assert "track: " in line and "split-digits-mlp" in line and "(hooks only)" not in line


def test_list_wraps_its_tables_to_the_terminal():
    from collapsebench.listing import describe
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager([])
    registry = Registry(manager)
    for width in (80, 120):
        text = describe(manager, registry, ["evaluators", "strategies"], width=width)
        assert max(len(line) for line in text.splitlines()) <= width, width
        assert "activations" in text and "forgetting-erank correlation" in " ".join(text.split())
