"""Studies: study files are checked, claims are statistics that can fail, and a study's quick
version runs through the sweep's executors into a page with PASS or FAIL per claim."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.report.runs import Run
from collapsebench.studies.checks import evaluate, onset_lead, pooled_spearman
from collapsebench.studies.spec import Claim, get_study, load_studies, read_study
from conftest import REPO

BUILTIN = {"zhu-jin-forgetting-collapse", "ramasesh-deeper-layers-forget", "dohare-loss-of-plasticity",
           "he-hessian-collapse"}

TINY_STUDY = '''
[study]
paper = "nobody"
description = "a tiny study a third-party collapsebench plugin ships"

[grid]
streams = ["split-digits"]
models = ["mlp"]
strategies = ["naive"]
seeds = [0]

[[claim]]
name = "learns"
text = "naive ends above chance"
statistic = "mean"
direction = ">"
threshold = 0.1
params = { strategy = "naive", metric = "average_accuracy" }
'''

STUDY_PLUGIN = '''
from pathlib import Path

from collapsebench import hookimpl


@hookimpl
def collapsebench_study_dirs():
    return [Path(__file__).parent / "plugin_studies"]
'''


def _run(strategy, seed, summary=None, matrix=None, records=(), model="mlp", taps=()):
    result = {"status": "complete", "config": {"stream": "s", "model": model, "strategy": strategy, "seed": seed},
              "summary": summary or {}, "accuracy_matrix": matrix or [], "metrics": list(records),
              "taps": [{"name": t, "width": 4} for t in taps]}
    return Run(Path(f"/nowhere/{strategy}{seed}"), result, strategy)


def _claim(statistic, direction=">", threshold=0.0, require="interval", **params):
    return Claim("c", "text", statistic, direction, threshold, require, params)


# --- study files ------------------------------------------------------------------------------


def test_builtin_studies_load_through_the_hook():
    studies = load_studies(build_manager())
    assert BUILTIN <= set(studies)
    zhu = studies["zhu-jin-forgetting-collapse"]
    assert zhu.full.models == ("mlp", "convgru", "biconvgru", "resnet18") and zhu.full.seeds == (0, 1, 2)
    assert zhu.quick.streams == ("split-digits",) and zhu.quick.run["epochs"] == 3
    assert zhu.quick.run["evaluators"] == ["activations"]  # inherited from [run]
    he = studies["he-hessian-collapse"]
    assert he.quick.stream_options["permuted-mnist"]["n_experiences"] == 15
    assert he.full.stream_options["permuted-mnist"]["n_experiences"] == 100
    assert all(study.meta.get("expected_minutes") for study in studies.values())


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('statistic = "mean"', 'statistic = "meen"'), "unknown statistic 'meen'"),
    (lambda t: t.replace('direction = ">"', 'direction = ">="'), "direction must be"),
    (lambda t: t.split("[[claim]]")[0], "at least one [[claim]]"),
    (lambda t: t.replace("seeds = [0]", "seeds = []"), "grid.seeds must be"),
    (lambda t: t + '\n[[figure]]\nname = "nope"\n', "unknown figure 'nope'"),
    (lambda t: t.replace("[grid]", "[run]\nstrategy = 'x'\n[grid]"), "run.strategy is set by the grid"),
])
def test_a_bad_study_file_is_refused_with_the_reason(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(TINY_STUDY))
    with pytest.raises(CollapsebenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_study(path)


def test_hook_study_dirs_add_a_study(tmp_path, cli):
    (tmp_path / "plugin_studies").mkdir()
    (tmp_path / "plugin_studies" / "tiny-study.toml").write_text(TINY_STUDY)
    plugin = tmp_path / "studyplugin.py"
    plugin.write_text(STUDY_PLUGIN)
    study = get_study(build_manager([str(plugin)]), "tiny-study")
    assert study.full.n_runs == 1 and study.claims[0].threshold == 0.1
    code, out, err = cli("study", "list", "--plugin", plugin)
    assert code == 0 and "tiny-study" in out and "zhu-jin-forgetting-collapse" in out
    code, out, err = cli("study", "run", "no-such-study", "--dry-run")
    assert code == 2 and "no-such-study" in err and "Traceback" not in err
    # Two plugins shipping the same study name: both files are named.
    other = tmp_path / "again"
    (other / "plugin_studies").mkdir(parents=True)
    (other / "plugin_studies" / "tiny-study.toml").write_text(TINY_STUDY)
    (other / "studyplugin2.py").write_text(STUDY_PLUGIN)
    with pytest.raises(CollapsebenchError, match="Two study files are named 'tiny-study'"):
        load_studies(build_manager([str(plugin), str(other / "studyplugin2.py")]))


# --- statistics and verdicts --------------------------------------------------------------------


def test_pooled_spearman_is_seeded_and_bootstraps_over_runs():
    rising = [[(x + k * 0.01, 2 * x + (k % 3) * 0.1) for x in range(5)] for k in range(4)]
    first, again = pooled_spearman(rising, seed=3), pooled_spearman(rising, seed=3)
    assert first == again and first.estimate > 0.9 and first.low > 0.5 and first.n == 4
    assert "bootstrap over 4 runs" in first.method
    falling = [[(x, -y) for x, y in points] for points in rising]
    assert pooled_spearman(falling, seed=3).estimate < -0.9


def test_difference_pairs_cells_and_its_verdict_can_fail():
    runs = [_run("a", s, {"acc": 0.8 + 0.01 * s}) for s in range(3)] + [_run("b", s, {"acc": 0.5}) for s in range(3)]
    verdict = evaluate(_claim("difference", metric="acc", a="a", b="b"), runs)
    assert verdict.passed and math.isclose(verdict.measured.estimate, 0.31) and verdict.measured.n == 3
    flipped = evaluate(_claim("difference", metric="acc", a="b", b="a"), runs)
    assert not flipped.passed and flipped.to_dict()["verdict"] == "FAIL"
    # An interval that straddles the threshold fails an interval claim but passes on the estimate.
    noisy = [_run("a", s, {"acc": v}) for s, v in enumerate((0.9, 0.4, 0.8))] + [_run("b", s, {"acc": 0.6}) for s in range(3)]
    assert not evaluate(_claim("difference", metric="acc", a="a", b="b"), noisy).passed
    assert evaluate(_claim("difference", metric="acc", a="a", b="b", require="estimate"), noisy).passed
    # Nothing to measure is a FAIL that says so, never a PASS.
    missing = evaluate(_claim("difference", metric="nothing", a="a", b="b"), runs)
    assert not missing.passed and "not measurable" in missing.reason


def _records(name, kind, values, phase="end"):
    return [{"name": name, "kind": kind, "layer": "all", "experience": e, "value": v, "phase": phase}
            for e, v in enumerate(values)]


def test_onset_lead_says_which_series_falls_first():
    acc = [0.9, 0.9, 0.9, 0.9, 0.5, 0.4]
    early = [_run("naive", s, matrix=[[v if i == j else None for j in range(6)] for i, v in enumerate(acc)],
                  records=_records("hessian_erank", "model", [10, 9, 6, 5, 5, 5], "start")) for s in range(3)]
    measured = onset_lead(early, {"strategy": "naive", "collapse": "hessian_erank@model:start"})
    assert measured.estimate == 2.0 and measured.detail["onsets"][0] == {"accuracy_onset": 4, "collapse_onset": 2}
    late = [_run("naive", s, matrix=early[0].result["accuracy_matrix"],
                 records=_records("hessian_erank", "model", [10, 10, 10, 10, 10, 3], "start")) for s in range(3)]
    verdict = evaluate(_claim("onset_lead", require="estimate", strategy="naive", collapse="hessian_erank@model:start"), late)
    assert verdict.measured.estimate == -1.0 and not verdict.passed


# --- a study end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ramasesh_quick(tmp_path_factory):
    from collapsebench.cli import main

    out = tmp_path_factory.mktemp("study") / "ramasesh"
    code = main(["study", "run", "ramasesh-deeper-layers-forget", "--quick", "--out", str(out), "--workers", "2"])
    return code, out


def test_a_quick_study_runs_and_checks_its_claims(ramasesh_quick, cli):
    code, out = ramasesh_quick
    assert code in (0, 1)  # 1 only when a claim fails: every run must still be complete
    claims = json.loads((out / "claims.json").read_text())
    assert claims["complete_runs"] == claims["planned_runs"] == 6 and claims["quick"] is True
    assert [c["claim"] for c in claims["claims"]] == ["cka-falls-with-depth", "replay-protects-deep-layers"]
    for claim in claims["claims"]:
        assert claim["verdict"] in ("PASS", "FAIL") and isinstance(claim["estimate"], float)
    depth = claims["claims"][0]
    assert depth["low"] is not None and depth["detail"]["runs"] == 3 and "bootstrap" in depth["interval_method"]
    page = (out / "report.html").read_text()
    assert "cka-falls-with-depth" in page and ("PASS" in page or "FAIL" in page) and "data:image/png" in page
    assert (out / "report-cka_by_depth.png").is_file()
    # Resumable: a second run finds every run complete and runs none.
    code, stdout, _ = cli("study", "run", "ramasesh-deeper-layers-forget", "--quick", "--out", out, "--no-report")
    assert code == 0 and "6 already complete, 0 to run" in stdout


def test_a_broken_input_makes_the_claim_fail(ramasesh_quick, tmp_path, cli):
    _, out = ramasesh_quick
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    # CKA that rises with depth and is the same under both strategies: neither claim may pass.
    for results in broken.glob("*/*/*/seed*/results.json"):
        data = json.loads(results.read_text())
        depth = {t["name"]: k for k, t in enumerate(data["taps"])}
        for record in data["metrics"]:
            if record["name"] == "cka":
                record["value"] = 0.5 + 0.1 * depth[record["layer"]]
        results.write_text(json.dumps(data))
    manifest = json.loads((broken / "study.json").read_text())
    manifest["run_dirs"] = [str(broken / Path(p).relative_to(out)) for p in manifest["run_dirs"]]
    (broken / "study.json").write_text(json.dumps(manifest))
    code, stdout, err = cli("study", "report", broken)
    assert code == 1, err
    verdicts = {c["claim"]: c for c in json.loads((broken / "claims.json").read_text())["claims"]}
    assert verdicts["cka-falls-with-depth"]["verdict"] == "FAIL" and verdicts["cka-falls-with-depth"]["estimate"] > 0
    assert verdicts["replay-protects-deep-layers"]["verdict"] == "FAIL"
    assert "FAIL  cka-falls-with-depth" in stdout


def test_only_runs_part_of_the_grid_and_the_page_says_so(ramasesh_quick, tmp_path, cli):
    _, out = ramasesh_quick
    part = tmp_path / "part"
    shutil.copytree(out, part)
    code, stdout, _ = cli("study", "run", "ramasesh-deeper-layers-forget", "--quick", "--out", part,
                          "--only", "seeds=1,0", "--only", "strategies=naive")
    assert code in (0, 1) and "2 runs (part of the grid: seeds = 1, 0; strategies = naive; the whole grid has 6" in stdout
    assert "2 already complete, 0 to run" in stdout
    manifest = json.loads((part / "study.json").read_text())
    # The grid's own order, whatever order the flag gives.
    assert [Path(p).parts[-2:] for p in manifest["run_dirs"]] == [("naive", "seed0"), ("naive", "seed1")]
    claims = json.loads((part / "claims.json").read_text())
    assert claims["planned_runs"] == claims["complete_runs"] == 2
    assert claims["only"] == {"seeds": ["1", "0"], "strategies": ["naive"]}
    assert "Part of the grid:" in (part / "report.html").read_text()


def test_study_jobs_are_labelled_with_their_place_in_the_grid(tmp_path):
    from collapsebench.registry import Registry
    from collapsebench.studies.jobs import build_jobs

    manager = build_manager()
    study = get_study(manager, "zhu-jin-forgetting-collapse")
    jobs = build_jobs(study, True, Registry(manager), tmp_path, [], only={"seeds": ["0"], "strategies": ["lwf"]})
    # Progress lines of a study tell its architectures apart; a track's sweep keeps the short label.
    assert [job.label for job in jobs] == ["split-digits/mlp lwf seed0", "split-digits/convgru lwf seed0"]
    assert dataclasses.replace(jobs[0], place="").label == "lwf seed0"


@pytest.mark.parametrize("flag, message", [
    ("stream=split-digits", "Unknown grid axis 'stream'. Did you mean 'streams'?"),
    ("models=mpl", "Unknown model 'mpl'. Did you mean 'mlp'?"),
    ("seeds=7", "the grid runs seeds 0"),
    ("seeds=one", "--only seeds takes integers"),
    ("strategies", "give AXIS=VALUE"),
])
def test_a_bad_only_is_refused_before_planning(flag, message, cli, tmp_path):
    code, _, err = cli("study", "run", "ramasesh-deeper-layers-forget", "--quick", "--dry-run", "--out",
                       tmp_path / "s", "--only", flag)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_study_report_of_a_directory_without_a_study_is_explained(tmp_path, cli):
    code, out, err = cli("study", "report", tmp_path)
    assert code == 2 and "study.json" in err and "Traceback" not in err


# --- the slower studies -------------------------------------------------------------------------


def _tampered(directory: Path, into: Path, tamper) -> Path:
    """A copy of a study directory with every run's results passed through ``tamper``."""
    shutil.copytree(directory, into)
    manifest = json.loads((into / "study.json").read_text())
    manifest["run_dirs"] = [str(into / Path(p).relative_to(directory)) for p in manifest["run_dirs"]]
    (into / "study.json").write_text(json.dumps(manifest))
    for results in into.glob("*/*/*/seed*/results.json"):
        data = json.loads(results.read_text())
        tamper(data)
        results.write_text(json.dumps(data))
    return into


def _swap_strategies(a, b):
    def tamper(data):
        strategy = data["config"]["strategy"]
        data["config"]["strategy"] = {a: b, b: a}.get(strategy, strategy)
    return tamper


def _naive_keeps_plasticity(data):
    if data["config"]["strategy"] == "naive":
        data["summary"]["plasticity_retention"] = 1.5


def _naive_collapses_long_before_it_stops_learning(data):
    """Naive's spectrum collapses right after its first measurement; its accuracy only at the last task."""
    if data["config"]["strategy"] == "naive":
        starts = [r for r in data["metrics"] if r["name"] == "hessian_erank" and r["phase"] == "start"]
        first = min(r["experience"] for r in starts)
        for record in starts:
            record["value"] = 5.0 if record["experience"] == first else 1.0
        matrix = data["accuracy_matrix"]
        for i, row in enumerate(matrix):
            row[i] = 0.9 if i < len(matrix) - 1 else 0.1


@pytest.mark.slow
@pytest.mark.parametrize("name, tamper, claim, verdict", [
    # Replay's results under naive's name: replay no longer beats naive.
    ("zhu-jin-forgetting-collapse", _swap_strategies("replay", "naive"), "replay-keeps-accuracy", "FAIL"),
    # Naive whose late tasks are learned better than its first: no loss of plasticity.
    ("dohare-loss-of-plasticity", _naive_keeps_plasticity, "naive-loses-plasticity", "FAIL"),
    ("dohare-loss-of-plasticity", _swap_strategies("cbp", "naive"), "cbp-keeps-plasticity", None),
    # The measured precedence fails at quick scale; a clear precedence must pass it.
    ("he-hessian-collapse", _naive_collapses_long_before_it_stops_learning, "spectrum-collapses-first", "PASS"),
    ("he-hessian-collapse", _swap_strategies("er_l2", "naive"), "er-l2-keeps-accuracy", "FAIL"),
])
def test_slow_quick_studies_run_and_a_changed_input_changes_the_verdict(name, tamper, claim, verdict, tmp_path_factory,
                                                                        cli, shared_mnist_root):
    out = tmp_path_factory.getbasetemp() / "slow-studies" / name  # shared by the cases of one study
    code, stdout, err = cli("study", "run", name, "--quick", "--out", out, "--workers", "2",
                            "--data-root", shared_mnist_root)
    assert code in (0, 1), err
    claims = json.loads((out / "claims.json").read_text())
    assert claims["complete_runs"] == claims["planned_runs"]
    before = {c["claim"]: c for c in claims["claims"]}
    assert all(c["verdict"] in ("PASS", "FAIL") and c["estimate"] is not None for c in before.values())
    changed = _tampered(out, tmp_path_factory.mktemp("changed") / name, tamper)
    cli("study", "report", changed)
    after = {c["claim"]: c for c in json.loads((changed / "claims.json").read_text())["claims"]}
    if before[claim]["statistic"] == "difference" and tamper.__name__ == "tamper":
        assert math.isclose(after[claim]["estimate"], -before[claim]["estimate"], abs_tol=1e-9)
    if verdict:
        assert after[claim]["verdict"] == verdict, after[claim]


def test_study_figures_colour_each_strategy_as_the_report_does():
    """One colour per strategy across every page: a study page uses the report's name-keyed palette,
    whatever order or company the strategies come in."""
    from types import SimpleNamespace

    from collapsebench.report.figures import colors_for
    from collapsebench.studies.figures import _strategy_colors

    runs = [SimpleNamespace(strategy=name) for name in ("replay", "naive", "lwf", "naive")]
    assert _strategy_colors(runs) == colors_for(["lwf", "naive", "replay"])
    assert _strategy_colors(runs[::-1]) == _strategy_colors(runs)  # order on the page does not matter
    assert len(set(_strategy_colors(runs).values())) == 3
