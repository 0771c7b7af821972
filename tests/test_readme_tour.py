"""The README's tour runs as written, in order, on a fresh clone.

The quick tests check what made the tour go stale before (a config file it never created, a
``--resume`` of a complete run, a report of one strategy, a submission name the board already
has) and run its commands that do not train. The slow test runs the whole tour in a scratch copy
of the board, from a fresh directory, except the TensorBoard server, which never exits.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "uv run collapsebench "
#: Commands the slow test leaves out, and why.
NOT_RUN = {"tensorboard": "a server that runs until stopped"}


def tour_commands() -> list[str]:
    """The shell lines of the README's tour, comments dropped, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## A five-minute tour")
    end = text.index("\n## ", start + 1)
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S):
        for line in block.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command:
                lines.append(command)
    return lines


def _argv(command: str) -> list[str]:
    assert command.startswith(PREFIX), command
    return shlex.split(command[len(PREFIX):])


def _collapsebench_commands() -> list[list[str]]:
    return [_argv(c) for c in tour_commands() if c.startswith(PREFIX)]


def test_every_config_file_the_tour_uses_is_created_before():
    created = []
    for command in tour_commands():
        if not command.startswith(PREFIX):
            created += re.findall(r">\s*(\S+)", command)
            continue
        argv = _argv(command)
        if "--config" in argv:
            assert argv[argv.index("--config") + 1] in created, command


def test_resume_is_never_pointed_at_a_complete_run():
    # a run the tour finishes has nothing to resume; the README explains --resume instead
    assert not any("--resume" in argv for argv in _collapsebench_commands())


def test_report_compares_at_least_two_strategies_of_the_track():
    commands = _collapsebench_commands()
    report = next(i for i, argv in enumerate(commands) if argv[0] == "report")
    track = next(a for a in commands[report] if a.startswith("runs/")).split("/")[1]
    strategies = {argv[argv.index("--strategy") + 1] for argv in commands[:report]
                  if argv[0] == "run" and "--track" in argv and argv[argv.index("--track") + 1] == track}
    assert len(strategies) >= 2, strategies


def test_submit_names_no_submission_the_board_already_has():
    names = {json.loads(p.read_text())["name"] for p in (ROOT / "leaderboard" / "submissions").rglob("*.json")
             if p.suffix == ".json" and not p.name.endswith(".verification.json")}
    for argv in _collapsebench_commands():
        if argv[0] == "submit":
            assert argv[argv.index("--name") + 1] not in names


def test_the_tour_commands_that_do_not_train_run(capsys, monkeypatch):
    from collapsebench.cli import main

    monkeypatch.chdir(ROOT)  # the committed board is read, not written
    quick = [argv for argv in _collapsebench_commands() if argv[0] in ("list", "plugins")
             or (argv[0] == "leaderboard" and "--write" not in argv)]
    assert len(quick) >= 4
    for argv in quick:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "split-digits-mlp" in out and "builtin_tracks" in out


@pytest.mark.slow
def test_the_whole_tour_runs_in_order_on_a_fresh_directory(tmp_path):
    scratch = tmp_path / "clone"
    scratch.mkdir()
    shutil.copytree(ROOT / "leaderboard", scratch / "leaderboard")
    executable = shutil.which("collapsebench", path=str(Path(sys.executable).parent))
    assert executable, "the collapsebench console script is not installed in this environment"
    env = {**os.environ, "PATH": f"{Path(executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in tour_commands():
        if command.startswith(PREFIX) and _argv(command)[0] in NOT_RUN:
            continue
        line = "collapsebench " + command[len(PREFIX):] if command.startswith(PREFIX) else command
        done = subprocess.run(["bash", "-c", line], cwd=scratch, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if " run --track " in command:  # a track run ends with its seeds summarised
            assert "Summary over seeds 0, 1, 2: mean ± 95% t-interval over 3 seeds" in done.stdout, done.stdout[-2000:]
    assert (scratch / "report.html").exists()
    assert (scratch / "leaderboard" / "submissions" / "split-digits-mlp" / "my-replay.json").exists()
