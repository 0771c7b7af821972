"""Hostile submissions and boards (issue 17): bounded reads, one-line names, clear messages."""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import time
from pathlib import Path

import pytest

from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.bounded import MAX_DEPTH, MAX_ITEMS, depth_of, markdown_text
from collapsebench.leaderboard.render import render_markdown
from collapsebench.leaderboard.board import load_boards
from collapsebench.leaderboard.submission import build_submission, slug, write_submission
from leaderboard_helpers import TRACK, write_runs

INJECTED = "a | b\n\n## Injected heading [x](javascript:alert(1)) <script>alert(1)</script>"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def submission(runs):
    return build_submission(runs, author="A. Tester")


def rehashed(submission: dict) -> dict:
    submission["content_hash"] = hashing.content_hash(submission)
    return submission


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_deep_nesting_is_an_invalid_submission(cli, tmp_path):
    deep = write(tmp_path / "deep.json", "[" * 10_000 + "]" * 10_000)
    code, out, err = cli("leaderboard", "validate", deep)
    assert code == 1, err
    assert f"nested 10000 levels deep (at most {MAX_DEPTH})" in out
    code, out, err = cli("verify", deep)
    assert code == 2 and "nested 10000 levels deep" in err and "Traceback" not in err


def test_deep_nesting_on_a_board_leaves_the_file_out(cli, tmp_path, submission):
    write_submission(copy.deepcopy(submission), tmp_path)
    folder = tmp_path / "submissions" / TRACK
    write(folder / "deep.json", '{"a": ' * 5000 + "1" + "}" * 5000)
    code, out, err = cli("leaderboard", "--board", tmp_path)
    assert code == 0, err
    assert "deep.json" in err and "levels deep" in err
    assert "naive" in out  # the valid submission is still shown


def test_brackets_inside_strings_do_not_count():
    assert depth_of(b'{"a": "[[[[{{{{\\"[[[["}') == 1
    assert depth_of(b"[[1], [2, [3]]]") == 3


def test_a_huge_integer_in_timing_is_an_invalid_submission(cli, tmp_path, submission):
    text = json.dumps(submission).replace('"timing": {', '"timing": {"huge": ' + "9" * 5000 + ", ", 1)
    path = write(tmp_path / "big.json", text)
    code, out, err = cli("leaderboard", "validate", path)
    assert code == 1, err
    assert "an integer of 5000 digits" in out and "Traceback" not in err


def test_a_five_million_value_series_is_rejected_fast(cli, tmp_path, submission):
    data = copy.deepcopy(submission)
    series = next(iter(data["runs"][0]["collapse"]))
    data["runs"][0]["collapse"][series] = [0] * 5_000_000
    path = write(tmp_path / "long.json", json.dumps(data))
    started = time.perf_counter()
    code, out, err = cli("leaderboard", "validate", path)
    elapsed = time.perf_counter() - started
    assert code == 1, err
    assert f"5000000 items (at most {MAX_ITEMS})" in out
    assert elapsed < 10, elapsed  # was 60 s


def test_a_file_above_the_size_cap_is_refused_unread(cli, tmp_path, monkeypatch):
    from collapsebench.leaderboard import bounded

    monkeypatch.setattr(bounded, "MAX_BYTES", 1000)
    path = write(tmp_path / "big.json", json.dumps({"pad": "x" * 2000}))
    code, out, err = cli("leaderboard", "validate", path)
    assert code == 1 and "above the limit of 1,000" in out


def test_an_injected_name_is_refused(submission, cli, tmp_path):
    from collapsebench.leaderboard.validate import check_submission

    problems = check_submission(rehashed({**copy.deepcopy(submission), "name": INJECTED}))
    assert any(p.startswith("name: holds the control character '\\n'") for p in problems), problems
    problems = check_submission(rehashed({**copy.deepcopy(submission), "author": "x" * 201}))
    assert any(p.startswith("author: 201 characters") for p in problems), problems


def test_submit_refuses_a_multiline_name(cli, runs, tmp_path):
    code, out, err = cli("submit", *runs, "--name", INJECTED, "--board", tmp_path)
    assert code == 2, err
    assert "--name" in err and "control character" in err
    assert not list(tmp_path.rglob("*.json"))


def test_unicode_names_are_allowed(cli, runs, tmp_path):
    assert slug("名前") == "名前"
    code, out, err = cli("submit", *runs, "--name", "名前", "--author", "Zoë Ñandú", "--board", tmp_path)
    assert code == 0, err
    assert (tmp_path / "submissions" / TRACK / "名前.json").is_file()
    boards, excluded = load_boards(tmp_path)
    assert not excluded and boards[0].entries[0].name == "名前"


def test_markdown_in_a_one_line_name_stays_text(submission, tmp_path):
    name = "a | b ## [x](javascript:alert(1)) <script>x</script>"
    write_submission(rehashed({**copy.deepcopy(submission), "name": name}), tmp_path)
    boards, excluded = load_boards(tmp_path)
    assert not excluded
    page = render_markdown(boards, excluded)
    row = next(line for line in page.splitlines() if "javascript" in line)
    assert "<script>" not in page and "[x](" not in page and "\\[x\\](javascript" in row
    assert markdown_text(name) in row
    header = next(line for line in page.splitlines() if line.startswith("| rank"))
    assert len(re.findall(r"(?<!\\)\|", row)) == header.count("|")  # no extra cell
    assert markdown_text("a|b") == "a\\|b"


def test_validate_on_a_directory_is_a_message(cli, tmp_path):
    code, out, err = cli("leaderboard", "validate", tmp_path)
    assert code == 2 and "is a directory" in err and "Traceback" not in err


def test_submit_to_a_board_that_is_a_file(cli, runs, tmp_path):
    board = write(tmp_path / "board", "")
    code, out, err = cli("submit", *runs, "--board", board)
    assert code == 2 and "Traceback" not in err
    assert str(board) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_submit_to_a_read_only_board(cli, runs, tmp_path):
    (tmp_path / "board").mkdir()
    (tmp_path / "board").chmod(0o555)
    try:
        code, out, err = cli("submit", *runs, "--board", tmp_path / "board")
    finally:
        (tmp_path / "board").chmod(0o755)
    assert code == 2 and "Traceback" not in err


def test_a_verification_record_marks_the_entry_and_binds_to_the_content(cli, submission, tmp_path):
    from collapsebench.leaderboard import verification
    from collapsebench.leaderboard.verify import Verdict

    forged = write_submission(rehashed({**copy.deepcopy(submission), "name": "forged"}), tmp_path)
    honest = write_submission(build_submission(write_runs(tmp_path / "runs", strategy="replay"), name="honest"), tmp_path)
    record = verification.record(honest, json.loads(honest.read_text()),
                                 Verdict(seed=1), by="reviewer")
    assert record == honest.with_name("honest.verification")
    saved = json.loads(record.read_text())["records"][0]
    assert saved["verified_by"] == "reviewer" and saved["seed"] == 1 and saved["environment"]["python"] == platform.python_version()
    assert saved["content_hash"] == json.loads(honest.read_text())["content_hash"]

    code, out, err = cli("leaderboard", "--board", tmp_path, "--format", "markdown")
    assert code == 0, err
    rows = {line.split("|")[3].strip(): line for line in out.splitlines() if line.startswith("| ") and "±" in line}
    assert "unverified" in rows["forged"] and "seed 1, 20" in rows["honest"]
    code, out, err = cli("leaderboard", "--board", tmp_path, "--verified-only")
    assert code == 0 and "honest" in out and "forged" not in out
    code, out, err = cli("leaderboard", "--board", tmp_path, "--format", "json")
    entries = {e["name"]: e for board in json.loads(out)["boards"] for e in board["entries"]}
    assert entries["forged"]["verification"] is None and entries["honest"]["verification"]["seeds"] == [1]

    # Edited after verifying: another content hash, so the record no longer counts.
    edited = json.loads(honest.read_text())
    edited["author"] = "someone else"
    honest.write_text(json.dumps(rehashed(edited)))
    code, out, err = cli("leaderboard", "--board", tmp_path, "--verified-only")
    assert "honest" not in out


def test_verified_only_cannot_write_the_pages(cli, tmp_path):
    code, out, err = cli("leaderboard", "--board", tmp_path, "--verified-only", "--write")
    assert code == 2 and "--verified-only" in err


def _untrusted_submission(submission, tmp_path) -> tuple[Path, Path]:
    """A submission naming a plugin file that leaves a marker when imported, and a track nobody has."""
    marker = tmp_path / "MARKER"
    evil = write(tmp_path / "evil_plugin.py", f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    data = copy.deepcopy(submission)
    data["plugins"] = [*data.get("plugins", []),
                       {"name": "evil_plugin", "source": "file", "location": str(evil), "distribution": None,
                        "version": None}]
    data["track"]["name"] = "no-such-track"  # so that, trusted, it stops right after the import
    for run in data["runs"]:
        run["config"]["track"] = "no-such-track"
    return write(tmp_path / "sub.json", json.dumps(rehashed(data))), marker


def _verify_on_a_terminal(path: Path, answer: str) -> tuple[int, str]:
    """``collapsebench verify PATH`` with stdin and stdout on a pseudo-terminal, as typed at a shell:
    waits for the prompt, types ``answer``, returns (exit code, everything the terminal showed)."""
    import pty
    import select
    import subprocess
    import sys

    from conftest import REPO

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "collapsebench.cli", "verify", str(path)], cwd=REPO,
                               stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    shown, answered, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if not answered and b"[y/N]" in shown:
                os.write(leader, answer.encode() + b"\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    assert answered, shown.decode(errors="replace")
    return code, shown.decode(errors="replace")


def test_verify_names_what_it_imports_and_needs_trust(cli, submission, tmp_path):
    path, marker = _untrusted_submission(submission, tmp_path)
    evil = tmp_path / "evil_plugin.py"
    code, out, err = cli("verify", path)
    assert code == 2, err
    assert f"file {evil}" in out and "--trust" in err, out + err
    assert not marker.exists()
    code, out, err = cli("verify", path, "--trust")
    assert marker.exists()  # trusted: imported (the submission then fails validation, as it should)
    assert code == 2 and "no installed track is named 'no-such-track'" in err and "Traceback" not in err, err


@pytest.mark.parametrize("answer", ["", "n", "no"])
def test_verify_on_a_terminal_imports_nothing_unless_told_yes(submission, tmp_path, answer):
    path, marker = _untrusted_submission(submission, tmp_path)
    code, shown = _verify_on_a_terminal(path, answer)
    assert code == 2, shown
    assert "Import and run them? [y/N]" in shown and "you declined to import" in shown, shown
    assert not marker.exists()


@pytest.mark.parametrize("answer", ["y", "YES"])
def test_verify_on_a_terminal_imports_once_told_yes(submission, tmp_path, answer):
    path, marker = _untrusted_submission(submission, tmp_path)
    code, shown = _verify_on_a_terminal(path, answer)
    assert marker.exists(), shown  # the answer stood in for --trust
    assert code == 2 and "no installed track is named 'no-such-track'" in shown and "Traceback" not in shown, shown


def test_a_board_that_refuses_writes_is_a_message(cli, runs, tmp_path, monkeypatch):
    """As root a read-only folder still takes writes, so the refusal is simulated where files are written."""
    from collapsebench.leaderboard import submission as submission_module

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(submission_module, "atomic_write_bytes", refuse)
    code, out, err = cli("submit", *runs, "--board", tmp_path)
    assert code == 2 and "Permission denied" in err and "Traceback" not in err, err
    monkeypatch.setattr("collapsebench.results.atomic_write_bytes", refuse)  # render imports it when writing
    code, out, err = cli("leaderboard", "--board", tmp_path, "--write")
    assert code == 2 and "Permission denied" in err and "Traceback" not in err, err
