"""The report page and the leaderboard page, loaded in a real (headless) Chromium.

Each page must load with no console error, no uncaught exception, no failed resource and no
image that did not decode; a screenshot of each is saved (first screen and whole page) under
``$COLLAPSEBENCH_SCREENSHOT_DIR`` if set, else pytest's temporary directory. Skipped, saying
why, where no Chromium is installed (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from headless_chromium import check_page, find_chromium
from report_synthetic import write_run

from collapsebench.report.figures import all_figures
from collapsebench.report.html import write_report
from collapsebench.report.runs import load_runs

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    chosen = os.environ.get("COLLAPSEBENCH_SCREENSHOT_DIR")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


def test_checker_catches_console_errors_and_broken_images(tmp_path, screenshots):
    # The checks below are only worth something if a bad page fails them.
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body>"
                    "<img src='missing.png' alt='missing'><script>console.error('boom')</script></body></html>")
    check = check_page(page, screenshots / "checker-bad-page", CHROMIUM)
    assert check.broken_images == ["missing"]
    assert any("boom" in message for message in check.console_errors)


def test_report_page_loads_cleanly(tmp_path, screenshots):
    dirs = [write_run(tmp_path / s, strategy=s, n_experiences=3) for s in ("naive", "replay")]
    partial = write_run(tmp_path / "partial", strategy="naive", seed=2, n_experiences=3, finished=2, include=("erank",))
    files = write_report(load_runs([*dirs, partial]), tmp_path / "report.html")
    check = check_page(files.page, screenshots / "report", CHROMIUM)
    assert check.problems == []
    assert check.image_count == len(all_figures())
    assert check.title == "collapsebench report: naive, replay"
    assert all(path.stat().st_size > 10_000 for path in check.screenshots)


def test_report_page_with_missing_figures_loads_cleanly(tmp_path, screenshots):
    files = write_report(load_runs([write_run(tmp_path / "run", include=())]), tmp_path / "sparse.html")
    check = check_page(files.page, screenshots / "report-sparse", CHROMIUM)
    # the accuracy matrix, the average-accuracy curve and the plasticity-over-tasks figure need nothing
    # but the accuracy matrix, the ranked-metrics bars only its summary
    assert check.problems == [] and check.image_count == 4


def test_leaderboard_page_loads_cleanly(screenshots):
    page = REPO / "leaderboard" / "index.html"
    if not page.exists():
        pytest.skip("leaderboard/index.html has not been generated (collapsebench leaderboard --write)")
    check = check_page(page, screenshots / "leaderboard", CHROMIUM)
    assert check.problems == []


def test_generated_leaderboard_page_loads_cleanly(tmp_path, screenshots, cli):
    # A board of synthetic submissions, so the page is checked even before any is committed.
    helpers = pytest.importorskip("leaderboard_helpers")
    from collapsebench.leaderboard.submission import build_submission, write_submission

    board = tmp_path / "board"
    for strategy, skill, collapse in (("naive", 0.2, 0.6), ("replay", 0.8, 0.7), ("lwf", 0.3, 0.9)):
        runs = helpers.write_runs(tmp_path / strategy, strategy, skill=skill, collapse=collapse)
        write_submission(build_submission(runs), board)
    code, _, err = cli("leaderboard", "--board", board, "--write")
    assert code == 0, err
    check = check_page(board / "index.html", screenshots / "leaderboard-generated", CHROMIUM)
    assert check.problems == []
    assert check.title == "collapsebench leaderboard"
