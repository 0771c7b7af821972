"""Leaderboard: building, validating and writing submissions; statistics and ranking; rendering.

Runs are synthetic (real track configs, made-up numbers), so nothing here trains or imports torch.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.ranking import (
    RANKING_RULE,
    Entry,
    estimate,
    normalized_ranks,
    pareto_fronts,
    rank_board,
    t_quantile_975,
)
from collapsebench.leaderboard.submission import build_submission, read_submission, write_submission
from collapsebench.leaderboard.validate import check_submission
from leaderboard_helpers import fake_results, track_record, write_runs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    return build_submission(write_runs(tmp_path_factory.mktemp("runs")), author="A. Tester", url="https://example.org/x")


def rehashed(submission: dict) -> dict:
    submission["content_hash"] = hashing.content_hash(submission)
    return submission


# --- statistics -------------------------------------------------------------------------------


def _t_central_mass(t: float, df: int, steps: int = 20000) -> float:
    """P(|T| <= t) for Student's t by Simpson's rule on its density (an independent check of the table)."""
    norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    h = t / steps
    total = sum((1 if i in (0, steps) else 4 if i % 2 else 2) * norm * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
                for i in range(steps + 1))
    return 2 * total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 17, 29, 30, 31, 45, 200])
def test_t_quantile_leaves_95_percent_in_the_middle(df):
    assert _t_central_mass(t_quantile_975(df), df) == pytest.approx(0.95, abs=2e-5 if df > 1 else 1e-4)


def test_t_quantile_tends_to_the_normal_quantile():
    assert t_quantile_975(10**6) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile_975(31) < t_quantile_975(30)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_estimate_is_the_t_interval():
    three = estimate([1.0, 2.0, 3.0])  # mean 2, sample standard deviation 1
    assert three.mean == 2.0 and three.ci95 == pytest.approx(4.3027 / math.sqrt(3))
    assert estimate([0.7]).ci95 is None
    assert estimate([0.5, 0.5]).ci95 == 0.0


# --- ranking ----------------------------------------------------------------------------------


def _entry(name, accuracy, retention):
    estimates = {"average_accuracy": estimate([accuracy])}
    if retention is not None:
        estimates["capacity_retention"] = estimate([retention])
    return Entry(name, {"name": name}, estimates)


def test_pareto_fronts_peel_off_non_dominated_sets():
    entries = [_entry("a", 0.9, 0.5), _entry("b", 0.5, 0.9), _entry("c", 0.6, 0.6), _entry("d", 0.5, 0.5),
               _entry("e", 0.4, 0.4), _entry("f", 0.6, 0.6)]
    fronts = [sorted(e.name for e in front) for front in pareto_fronts(entries)]
    # c and f are equal: neither dominates the other; d is beaten by c; e by everything.
    assert fronts == [["a", "b", "c", "f"], ["d"], ["e"]]


def test_normalized_ranks_share_ties_and_respect_direction():
    entries = [_entry("a", 0.9, 0.1), _entry("b", 0.5, 0.1), _entry("c", 0.5, 0.1), _entry("d", 0.1, 0.1)]
    assert normalized_ranks(entries, "average_accuracy") == [0.0, 0.5, 0.5, 1.0]
    assert normalized_ranks(entries[:1], "average_accuracy") == [0.0]
    entries[0].estimates["forgetting"] = estimate([0.9])
    entries[1].estimates["forgetting"] = estimate([0.1])
    assert normalized_ranks(entries[:2], "forgetting") == [1.0, 0.0]  # lower forgetting is better


def test_rank_board_orders_fronts_then_mean_normalized_rank():
    def submission(name, accuracy, retention):
        runs = [{"summary": {"average_accuracy": accuracy, **({"capacity_retention": retention} if retention else {})}}]
        return {"name": name, "runs": runs}

    ranked = rank_board([
        submission("balanced", 0.7, 0.7),      # front 1, ranks 2 and 2 of 4 measured -> score 1/3
        submission("accurate", 0.9, 0.2),      # front 1, ranks 1 and 4 -> score 1/2
        submission("retaining", 0.3, 0.95),    # front 1, ranks 4 and 1 -> score 1/2 (tie: by name)
        submission("dominated", 0.6, 0.6),     # front 2
        submission("unmeasured", 0.99, None),  # no capacity retention: after everyone
    ])
    assert [(e.name, e.front) for e in ranked] == [
        ("balanced", 1), ("accurate", 1), ("retaining", 1), ("dominated", 2), ("unmeasured", None)]
    assert [e.rank for e in ranked] == [1, 2, 3, 4, 5]
    assert ranked[0].score == pytest.approx(1 / 3) and ranked[1].score == pytest.approx(0.5)


def test_the_ranking_rule_is_documented_where_users_read():
    docs = (REPO / "docs" / "leaderboard.md").read_text()
    assert RANKING_RULE in docs.replace("\n", " ")


# --- building and validating ------------------------------------------------------------------


def test_a_built_submission_is_valid_and_complete(submission):
    assert check_submission(submission, track_record()) == []
    assert [run["seed"] for run in submission["runs"]] == [0, 1, 2]
    run = submission["runs"][0]
    assert "out" not in run["config"] and "data_root" not in run["config"]  # nothing about the submitter's disk
    assert run["collapse"]["erank/activation/fc1"][-1] is not None
    assert submission["strategy"]["sources"][0]["files"]["collapsebench_plugins.strategies"]
    assert submission["data"] == {"stream": "split-digits", "fingerprint": "sklearn-digits-test",
                                  "description": "sklearn digits, 1437 train / 360 test images", "sample": False}
    assert submission["track"]["protocol"]["evaluators"] == track_record().config["evaluators"]


def _mutations():
    """(what is changed, how, words the message must contain). Each is re-hashed unless noted."""
    def seed_field(run_index, *path):
        def mutate(s, value):
            target = s["runs"][run_index]
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return mutate

    return [
        ("matrix entry", lambda s: s["runs"][0]["accuracy_matrix"][4].__setitem__(0, 0.0), "runs[0].summary.average_accuracy"),
        ("summary value", lambda s: s["runs"][1]["summary"].__setitem__("forgetting", 0.01), "runs[1].summary.forgetting"),
        ("capacity retention", lambda s: s["runs"][2]["summary"].__setitem__("capacity_retention", 0.99),
         "runs[2].summary.capacity_retention"),
        ("dead units", lambda s: s["runs"][0]["summary"].__setitem__("dead_units", 0.0), "runs[0].summary.dead_units"),
        ("budget in run and protocol", lambda s: [r["config"].__setitem__("epochs", 50) for r in s["runs"]]
         and None or s["track"]["protocol"].__setitem__("epochs", 50), "track.protocol.epochs"),
        ("evaluators", lambda s: [r["config"].__setitem__("evaluators", ["erank"]) for r in s["runs"]]
         and None or s["track"]["protocol"].__setitem__("evaluators", ["erank"]), "track.protocol.evaluators"),
        ("one run's budget", lambda s: seed_field(1, "config", "lr")(s, 0.5), "runs[1].config.lr"),
        ("a seed dropped", lambda s: s["runs"].pop(), "runs: seeds [0, 1]"),
        ("seed count in track", lambda s: (s["track"]["seeds"].append(7), s["runs"].append(copy.deepcopy(s["runs"][0])),
                                           s["runs"][-1].__setitem__("seed", 7), s["runs"][-1]["config"].__setitem__("seed", 7)),
         "track.seeds"),
        ("another strategy", lambda s: seed_field(2, "config", "strategy")(s, "replay"), "runs[2].config.strategy"),
        ("another track", lambda s: seed_field(0, "config", "track")(s, "other-track"), "runs[0].config.track"),
        ("another data set", lambda s: seed_field(1, "stream", "fingerprint")(s, "mnist-0000"), "runs[1].stream.fingerprint"),
        ("sample label", lambda s: s["data"].__setitem__("sample", True), "data.sample"),
        ("NaN", lambda s: s["runs"][0]["summary"].__setitem__("bwt", float("nan")), "runs[0].summary.bwt"),
        ("infinity", lambda s: s["runs"][0]["collapse"]["erank/activation/fc2"].__setitem__(1, float("inf")),
         "runs[0].collapse.erank/activation/fc2[1]"),
        ("missing field", lambda s: s.pop("runs"), "'runs' is a required property"),
        ("wrong type", lambda s: s["runs"][0].__setitem__("accuracy_matrix", "high"), "runs[0].accuracy_matrix"),
        ("accuracy above 1", lambda s: s["runs"][0]["accuracy_matrix"][0].__setitem__(0, 1.5), "runs[0].accuracy_matrix[0][0]"),
        ("partial run", lambda s: s["runs"][0].__setitem__("status", "partial"), "runs[0].status"),
        ("not square", lambda s: s["runs"][0]["accuracy_matrix"].pop(), "runs[0].accuracy_matrix: must be 5 x 5"),
        ("url with a trailing newline", lambda s: s.__setitem__("url", "https://example.org/\n"), "url"),
        ("unknown field", lambda s: s.__setitem__("bonus", 1), "Additional properties are not allowed ('bonus'"),
    ]


@pytest.mark.parametrize("what, mutate, expected", _mutations(), ids=[m[0] for m in _mutations()])
def test_each_invalid_submission_is_rejected_naming_the_field(submission, what, mutate, expected):
    mutated = copy.deepcopy(submission)
    mutate(mutated)
    try:
        rehashed(mutated)
    except ValueError:
        pass  # NaN cannot be hashed: the hash stays as it was
    problems = check_submission(mutated, track_record())
    assert any(expected in p for p in problems), problems


def test_an_edit_after_submitting_breaks_the_content_hash(submission):
    edited = copy.deepcopy(submission)
    edited["author"] = "someone else"
    assert [p for p in check_submission(edited, track_record()) if p.startswith("content_hash:")]
    assert check_submission(rehashed(edited), track_record()) == []  # the author is free text


def test_the_track_file_decides_the_protocol(submission):
    changed = copy.deepcopy(track_record())
    object.__setattr__(changed, "config", {**changed.config, "epochs": 3})
    problems = check_submission(submission, changed)
    assert any(p.startswith("track.protocol.epochs: 5 but the track file") for p in problems), problems
    assert check_submission(submission, None) == []  # without the track file: consistency only
    renamed = rehashed({**copy.deepcopy(submission), "track": {**submission["track"], "name": "gone"}})
    assert any(p.startswith("track.name: no installed track") for p in check_submission(renamed, None, require_track=True))


def test_building_refuses_mixed_or_incomplete_runs(tmp_path):
    naive = write_runs(tmp_path, "naive")
    replay = write_runs(tmp_path, "replay")
    with pytest.raises(CollapsebenchError, match="one strategy for all its runs"):
        build_submission([naive[0], naive[1], replay[2]])
    with pytest.raises(CollapsebenchError, match=r"lack seeds \[2\]"):
        build_submission(naive[:2])
    with pytest.raises(CollapsebenchError, match="same seed"):
        build_submission([naive[0], naive[0], naive[1]])
    partial = json.loads((naive[2] / "results.json").read_text())
    partial["status"] = "partial"
    (naive[2] / "results.json").write_text(json.dumps(partial))
    with pytest.raises(CollapsebenchError, match="only complete runs"):
        build_submission(naive)


def test_plasticity_is_recomputed_and_ranked(tmp_path):
    submission = build_submission(write_runs(tmp_path, fresh=[0.98, 0.97, 0.0, 0.99, 0.96]))
    assert check_submission(submission, track_record()) == []
    assert submission["runs"][0]["summary"]["plasticity"][2] is None  # fresh model at 0: no ratio
    entry = rank_board([submission])[0]
    expected = [run["summary"]["plasticity_mean"] for run in submission["runs"]]
    assert entry.estimates["plasticity"].values == tuple(expected)
    for field, value in (("plasticity_mean", 0.5), ("fresh_accuracy", [0.5] * 5)):
        mutated = copy.deepcopy(submission)
        mutated["runs"][1]["summary"][field] = value
        problems = check_submission(rehashed(mutated), track_record())
        assert any(p.startswith(f"runs[1].summary.{field}") for p in problems), problems


def test_a_sample_stream_is_labelled(tmp_path):
    runs = write_runs(tmp_path, description="8,000 train / 2,000 test MNIST images; a 10,000-image sample, not comparable")
    assert build_submission(runs)["data"]["sample"] is True


# --- writing ----------------------------------------------------------------------------------


def test_a_duplicate_needs_replace(tmp_path, submission):
    path = write_submission(submission, tmp_path)
    assert path == tmp_path / "submissions" / "split-digits-mlp" / "naive.json"
    assert read_submission(path) == submission
    with pytest.raises(CollapsebenchError, match="--replace"):
        write_submission(submission, tmp_path)
    renamed = rehashed({**copy.deepcopy(submission), "name": "naive again"})
    with pytest.raises(CollapsebenchError, match="same runs"):
        write_submission(renamed, tmp_path)
    write_submission(renamed, tmp_path, replace=True)
    assert sorted(p.name for p in path.parent.glob("*.json")) == ["naive-again.json"]  # the duplicate went


def _submit_in_process(args):
    board, name, submission = args
    try:
        write_submission(rehashed({**submission, "name": name}), board)
        return "ok"
    except CollapsebenchError:
        return "refused"


def test_concurrent_submits_lose_nothing(tmp_path, submission):
    different = []
    for index in range(6):  # different runs each (else they would be duplicates of one another)
        s = copy.deepcopy(submission)
        s["runs"][0]["results_sha256"] = f"{index:064x}"
        different.append((tmp_path, f"entry {index}", s))
    same_name = [(tmp_path, "contested", submission)] * 4
    with multiprocessing.get_context("fork").Pool(4) as pool:
        outcomes = pool.map(_submit_in_process, different + same_name)
    assert outcomes[:6] == ["ok"] * 6
    assert sorted(outcomes[6:]) == ["ok", "refused", "refused", "refused"]
    files = sorted(p.name for p in (tmp_path / "submissions" / "split-digits-mlp").glob("*.json"))
    assert files == ["contested.json"] + [f"entry-{i}.json" for i in range(6)]
    assert not list((tmp_path / "submissions" / "split-digits-mlp").glob(".*.tmp"))


# --- the strategy's source hash ---------------------------------------------------------------


def test_the_source_hash_follows_the_strategy_plugin_and_its_imports(tmp_path):
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    package = tmp_path / "hashpkg_demo"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from collapsebench import Strategy, StrategyParts, hookimpl

        def build(context):
            from .helper import parts  # imported inside the factory, as plugins do
            return parts(_options())

        def _options():
            from . import options  # reached through a function the factory calls
            return options.DEFAULTS

        def build_other(context):
            from .other import parts  # another strategy's code: not part of "hashed"
            return parts()

        @hookimpl
        def collapsebench_strategies():
            return [Strategy("hashed", "a strategy whose source is hashed", build),
                    Strategy("other", "another strategy of the same plugin", build_other)]
    """))
    (package / "helper.py").write_text("def parts(options):\n    from collapsebench import StrategyParts\n    return StrategyParts()\n")
    (package / "options.py").write_text("from .constants import RATE\nDEFAULTS = {'rate': RATE}\n")
    (package / "constants.py").write_text("RATE = 0.1\n")
    (package / "other.py").write_text("def parts():\n    raise SystemExit\n")
    sys.path.insert(0, str(tmp_path))
    try:
        manager = build_manager(["hashpkg_demo"])
        source = hashing.strategy_source(manager, Registry(manager), "hashed")
        assert sorted(source["files"]) == ["hashpkg_demo", "hashpkg_demo.constants", "hashpkg_demo.helper",
                                           "hashpkg_demo.options"]
        assert sorted(hashing.strategy_source(manager, Registry(manager), "other")["files"]) == [
            "hashpkg_demo", "hashpkg_demo.other"]
        assert source["files"]["hashpkg_demo.helper"] == hashing.sha256_hex((package / "helper.py").read_bytes())
        assert "hashpkg_demo.helper" not in sys.modules  # found by reading imports, not by importing
        (package / "other.py").write_text("def parts():\n    return None\n")
        assert hashing.strategy_source(manager, Registry(manager), "hashed") == source
        (package / "constants.py").write_text("RATE = 0.2\n")
        assert hashing.strategy_source(manager, Registry(manager), "hashed")["sha256"] != source["sha256"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hashpkg_demo", None)


def test_verify_refuses_a_strategy_whose_source_changed(submission):
    from collapsebench.leaderboard.verify import check_strategy_source
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager()
    check_strategy_source(submission, manager, Registry(manager))  # as installed: fine
    tampered = copy.deepcopy(submission)
    tampered["strategy"]["sources"][0]["files"]["collapsebench_plugins.strategies"] = "0" * 64
    tampered["strategy"]["sources"][0]["sha256"] = hashing.combined_hash(tampered["strategy"]["sources"][0]["files"])
    with pytest.raises(CollapsebenchError, match="modules that differ: collapsebench_plugins.strategies"):
        check_strategy_source(tampered, manager, Registry(manager))


# --- rendering and the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    runs = tmp_path_factory.mktemp("board_runs")
    for strategy, skill, collapse in (("naive", 0.2, 0.6), ("replay", 0.8, 0.7), ("lwf", 0.3, 0.9), ("ewc", 0.25, 0.65)):
        write_submission(build_submission(write_runs(runs, strategy, skill=skill, collapse=collapse)), root)
    sample_runs = write_runs(tmp_path_factory.mktemp("sample_runs"), "naive", fingerprint="mnist-sample",
                             description="a 10,000-image sample, not comparable")
    write_submission({**build_submission(sample_runs, name="naive on a sample")}, root)
    broken = root / "submissions" / "split-digits-mlp" / "broken.json"
    broken.write_text('{"format": "collapsebench-submission"}')
    return root


def test_the_board_ranks_each_data_fingerprint_separately(board, cli):
    code, out, err = cli("leaderboard", "--board", board, "--format", "json")
    assert code == 0
    data = json.loads(out)
    by_fingerprint = {b["fingerprint"]: b for b in data["boards"]}
    assert sorted(by_fingerprint) == ["mnist-sample", "sklearn-digits-test"]
    assert by_fingerprint["mnist-sample"]["sample"] is True
    full = by_fingerprint["sklearn-digits-test"]["entries"]
    # replay leads on accuracy, lwf on retention, each second on the other: equal scores, so by name
    assert [(e["name"], e["score"]) for e in full][:2] == [("lwf", pytest.approx(1 / 6)), ("replay", pytest.approx(1 / 6))]
    assert {e["name"]: e["front"] for e in full} == {"lwf": 1, "replay": 1, "ewc": 2, "naive": 3}  # ewc beats naive on both
    metrics = full[0]["metrics"]["average_accuracy"]
    assert metrics["n"] == 3 and metrics["mean"] == pytest.approx(sum(metrics["values"]) / 3)
    assert [x["file"].endswith("broken.json") for x in data["excluded"]] == [True]
    assert "left out" in err


def test_markdown_and_html_pages(board, cli):
    code, out, _ = cli("leaderboard", "--board", board, "--write", "--format", "markdown", "--sort", "forgetting")
    assert code == 0
    readme = (board / "README.md").read_text()
    assert RANKING_RULE in readme and "split-digits-mlp (sample data)" in readme and "| replay " in readme
    page = (board / "index.html").read_text()
    assert page.count("<svg") == 2 and page.count("<circle") == 5 and 'class="front"' in page
    assert "<script" not in page and "<link" not in page and 'src="' not in page  # self-contained
    assert "sample data" in page
    cli("leaderboard", "--board", board, "--write")
    assert (board / "index.html").read_text() == page  # no clock, no machine: the same bytes again


def test_validate_command(board, tmp_path, cli):
    good = board / "submissions" / "split-digits-mlp" / "replay.json"
    code, out, _ = cli("leaderboard", "validate", good)
    assert code == 0 and "valid (replay on split-digits-mlp, 3 seeds)" in out
    tampered = tmp_path / "tampered.json"
    tampered.write_text(good.read_text().replace('"author": null', '"author": "me"'))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, _ = cli("leaderboard", "validate", tampered)
    assert code == 1 and "INVALID" in out and "content_hash" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # writes nothing
    (tmp_path / "not.json").write_text("{nope")
    assert cli("leaderboard", "validate", tmp_path / "not.json")[0] == 1


def test_submit_command(tmp_path, cli):
    runs = write_runs(tmp_path / "runs", "lwf")
    code, out, _ = cli("submit", *runs, "--board", tmp_path / "board", "--name", "LwF (defaults)", "--author", "me")
    assert code == 0 and "lwf-defaults.json" in out
    code, _, err = cli("submit", *runs, "--board", tmp_path / "board", "--name", "LwF (defaults)")
    assert code == 2 and "--replace" in err
    assert cli("submit", *runs, "--board", tmp_path / "board", "--name", "LwF (defaults)", "--replace")[0] == 0


def test_the_leaderboard_command_does_not_import_torch(board):
    script = (
        "import sys\nfrom collapsebench.cli import main\n"
        f"main(['leaderboard', '--board', {str(board)!r}, '--format', 'html'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'avalanche'))\n"
        "assert not heavy, heavy[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_committed_board_is_current():
    """leaderboard/README.md and index.html are what the committed submissions render to."""
    from collapsebench.leaderboard.board import load_boards
    from collapsebench.leaderboard.render import render_html, render_markdown

    board = REPO / "leaderboard"
    if not list((board / "submissions").glob("*/*.json")):
        pytest.skip("no submissions committed yet")
    boards, excluded = load_boards(board)
    assert not excluded, [(x.path.name, x.problems[:2]) for x in excluded]
    assert (board / "README.md").read_text() == render_markdown(boards, excluded), "run `collapsebench leaderboard --write`"
    assert (board / "index.html").read_text() == render_html(boards, excluded), "run `collapsebench leaderboard --write`"
