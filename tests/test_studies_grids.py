"""Studies over option grids (Ramasesh's task similarity), the Hessian density heatmap the
hessian evaluator declares, the Zhu & Jin full version's CIFAR-100 data check, and the README's
study commands."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.registry import Registry
from collapsebench.report.runs import Run
from collapsebench.studies.checks import evaluate, interior_peak
from collapsebench.studies.jobs import build_jobs, missing_data
from collapsebench.studies.spec import Claim, get_study, load_studies, read_study
from conftest import REPO
from report_synthetic import write_run
from test_streams import cifar100_root, mnist_root  # noqa: F401 (fixtures: tiny files in the real formats)

AXES_STUDY = '''
[study]
paper = "nobody"
description = "a grid of stream options"

[grid]
streams = ["task-similarity"]
models = ["mlp"]
strategies = ["naive"]
seeds = [0, 1]

[grid.stream_axes.task-similarity]
mixing = ["classes", "inputs"]
similarity = [0.0, 0.5, 1.0]

[streams.task-similarity]
classes_per_task = 2

[quick.grid.stream_axes.task-similarity]
mixing = ["classes"]

[[claim]]
name = "peak"
text = "a hump"
statistic = "interior_peak"
direction = ">"
threshold = 0.0
params = { option = "similarity", at = 0.5 }
'''


# --- the task-similarity stream -------------------------------------------------------------------


def _labelled_images(classes, per_class=6):
    """Images whose every pixel is their class, so a blend's pixel says what was blended."""
    y = torch.tensor([c for c in classes for _ in range(per_class)])
    return y.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone(), y


def test_task_b_mixes_two_tasks_classes_in_proportion():
    from collapsebench_plugins.streams.similarity import task_a, task_b

    x, y = _labelled_images(range(10), per_class=8)
    old, new = [3, 7], [1, 9]
    ax, ay = task_a(x, y, old)
    assert sorted(set(ax[:, 0, 0, 0].tolist())) == [3.0, 7.0] and torch.equal(ay, (ax[:, 0, 0, 0] == 7).long())
    for s, from_old in ((0.0, 0), (0.25, 2), (0.5, 4), (1.0, 8)):
        bx, by = task_b(x, y, old, new, s, "classes", torch.Generator().manual_seed(0))
        for label in (0, 1):
            sources = bx[by == label][:, 0, 0, 0].tolist()
            assert len(sources) == 8 and sources.count(old[label]) == from_old
            assert sources.count(new[label]) == 8 - from_old
    bx, by = task_b(x, y, old, new, 0.25, "inputs", torch.Generator().manual_seed(0))
    for label in (0, 1):  # every pixel the blend 0.25 * old class + 0.75 * new class
        assert torch.allclose(bx[by == label], torch.full_like(bx[by == label], 0.25 * old[label] + 0.75 * new[label]))


def test_task_similarity_stream_builds_two_tasks_with_their_own_heads():
    from collapsebench.records import StreamContext

    registry = Registry(build_manager())
    record = registry.entry("stream", "task-similarity").record
    options = {**record.option_defaults(), "similarity": 1.0}
    stream = record.factory(StreamContext(seed=0, scenario="task", data_root=Path("/nowhere")), **options)
    train = list(stream.benchmark.train_stream)
    assert len(train) == 2 and stream.n_classes == 5 and stream.input_shape == (1, 8, 8)
    assert [e.task_label for e in train] == [0, 1] and "task A classes" in stream.description
    # similarity 1: task B is task A's classes under task A's labels (a per-class subsample of them)
    a_x = torch.stack([train[0].dataset[i][0] for i in range(len(train[0].dataset))])
    b_x = torch.stack([train[1].dataset[i][0] for i in range(len(train[1].dataset))])
    a_rows = {tuple(r.flatten().tolist()) for r in a_x}
    assert all(tuple(r.flatten().tolist()) in a_rows for r in b_x)
    other = record.factory(StreamContext(seed=0, scenario="task", data_root=Path("/nowhere")),
                           **{**options, "similarity": 0.5})
    assert other.fingerprint != stream.fingerprint
    with pytest.raises(CollapsebenchError, match="scenarios task, domain"):
        record.factory(StreamContext(seed=0, scenario="class", data_root=Path("/nowhere")), **options)


def test_task_similarity_on_mnist_checks_its_files_first(tmp_path, cli):
    code, _, err = cli("run", "--stream", "task-similarity", "--stream-option", "data=mnist", "--data-root", tmp_path,
                       "--out", tmp_path / "run")
    assert code == 2 and "train-images-idx3-ubyte" in err and "Traceback" not in err


# --- option axes in a study's grid ---------------------------------------------------------------


def test_a_grid_axis_runs_every_combination_of_option_values(tmp_path):
    path = tmp_path / "axes.toml"
    path.write_text(AXES_STUDY)
    study = read_study(path)
    assert study.full.n_runs == 2 * 3 * 2 and study.quick.n_runs == 1 * 3 * 2
    assert study.full.variants("streams", "task-similarity")[:2] == [{"mixing": "classes", "similarity": 0.0},
                                                                      {"mixing": "classes", "similarity": 0.5}]
    assert study.full.variants("models", "mlp") == [{}]
    jobs = build_jobs(study, False, Registry(build_manager()), tmp_path / "out", [])
    names = sorted({Path(job.run_dir).parts[-4] for job in jobs})
    assert len(jobs) == 12 and len(names) == 6 and "task-similarity@mixing=inputs,similarity=0.5" in names
    job = next(j for j in jobs if "mixing=inputs,similarity=0.5" in j.run_dir)
    # the axis value joins the stream's other options, and the run's identity records it
    assert job.config["stream_options"] == {"classes_per_task": 2, "mixing": "inputs", "similarity": 0.5}
    assert len({json.dumps(j.identity, sort_keys=True) for j in jobs}) == 12


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("[grid.stream_axes.task-similarity]", "[grid.stream_axes.split-digits]"),
     "varies a stream the grid does not run"),
    (lambda t: t.replace('similarity = [0.0, 0.5, 1.0]', 'similarity = []'), "must be a non-empty list"),
    (lambda t: t.replace('similarity = [0.0, 0.5, 1.0]', 'similarity = [0.5, 0.5]'), "lists a value twice"),
    (lambda t: t.replace("classes_per_task = 2", "similarity = 0.3"), "is also a grid axis"),
])
def test_a_bad_axis_is_refused_with_the_reason(tmp_path, edit, message):
    path = tmp_path / "axes.toml"
    path.write_text(edit(AXES_STUDY))
    with pytest.raises(CollapsebenchError, match=message):
        read_study(path)


def test_a_bad_axis_value_fails_before_anything_runs(tmp_path):
    path = tmp_path / "axes.toml"
    path.write_text(AXES_STUDY.replace("similarity = [0.0, 0.5, 1.0]", "similarity = [0.0, 1.5]"))
    with pytest.raises(CollapsebenchError, match="similarity"):
        build_jobs(read_study(path), False, Registry(build_manager()), tmp_path / "out", [])


# --- forgetting against similarity ---------------------------------------------------------------


def _similarity_run(seed, similarity, forgetting, mixing="classes", strategy="naive"):
    config = {"stream": "task-similarity", "model": "mlp", "strategy": strategy, "seed": seed,
              "stream_options": {"mixing": mixing, "similarity": similarity}}
    result = {"status": "complete", "config": config, "summary": {"forgetting": forgetting},
              "accuracy_matrix": [[0.9, 0.2], [0.9 - forgetting, 0.9]], "metrics": [], "taps": []}
    return Run(Path(f"/nowhere/{mixing}{similarity}{seed}"), result, strategy)


def _curve(shape, seeds=3, mixings=("classes",)):
    return [_similarity_run(seed, s, shape(s) + 0.01 * seed, mixing)
            for mixing in mixings for seed in range(seeds) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]


PEAK = Claim("peak", "a hump", "interior_peak", ">", 0.0, "interval",
             {"option": "similarity", "at": 0.5, "metric": "forgetting", "strategy": "naive"})


def test_interior_peak_passes_a_hump_and_fails_a_slope():
    hump = evaluate(PEAK, _curve(lambda s: 0.4 - 0.8 * abs(s - 0.5)))
    # at 0.5: 0.4; ends: 0.0 -> excess 0.4 in every seed (the seed offset cancels)
    assert hump.passed and math.isclose(hump.measured.estimate, 0.4) and hump.measured.n == 3
    falling = evaluate(PEAK, _curve(lambda s: 0.3 * (1 - s)))
    assert not falling.passed and math.isclose(falling.measured.estimate, 0.15 - 0.3)
    # Two mixings of one seed share their ends: one value per seed, not one per group.
    both = interior_peak(_curve(lambda s: 0.4 - 0.8 * abs(s - 0.5), mixings=("classes", "inputs")), PEAK.params)
    assert both.n == 3 and both.detail["groups"] == 6
    missing = evaluate(PEAK, [r for r in _curve(lambda s: s) if r.config["stream_options"]["similarity"] != 0.5])
    assert not missing.passed and "not measurable" in missing.reason


def test_strategies_are_paired_within_an_axis_value():
    from collapsebench.studies.checks import difference

    runs = [_similarity_run(0, s, 0.5, strategy="a") for s in (0.0, 1.0)] + \
           [_similarity_run(0, s, 0.1 * s, strategy="b") for s in (0.0, 1.0)]
    measured = difference(runs, {"metric": "forgetting", "a": "a", "b": "b"})
    assert measured.detail["pairs"] == 2 and math.isclose(measured.estimate, (0.5 + 0.4) / 2)


def test_forgetting_against_the_varied_option_is_drawn_per_mixing():
    from collapsebench.studies.figures import specs

    spec = specs(["forgetting_vs_option"])[0]
    fig = spec.draw(_curve(lambda s: 0.3 * (1 - s), mixings=("classes", "inputs")))
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["task-similarity · mlp · mixing=classes",
                                                                  "task-similarity · mlp · mixing=inputs"]
    line = axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(line.get_ydata(), [0.3 * (1 - s) + 0.01 for s in (0.0, 0.25, 0.5, 0.75, 1.0)])
    assert axes[0].get_xlabel() == "similarity"
    from collapsebench.report.figures import MissingData

    with pytest.raises(MissingData, match="vary no numeric"):
        spec.draw([_similarity_run(0, 0.5, 0.1)])


@pytest.mark.slow
def test_the_similarity_quick_study_runs_and_a_hump_would_pass(tmp_path_factory, cli):
    from test_studies import _tampered

    out = tmp_path_factory.mktemp("similarity") / "quick"
    code, _, err = cli("study", "run", "ramasesh-intermediate-similarity", "--quick", "--out", out, "--workers", "2")
    assert code in (0, 1), err
    claims = json.loads((out / "claims.json").read_text())
    assert claims["complete_runs"] == claims["planned_runs"] == 15
    assert claims["claims"][0]["detail"]["seeds"] == 3 and (out / "report-forgetting_vs_option.png").is_file()

    def hump(data):
        s = data["config"]["stream_options"]["similarity"]
        data["summary"]["forgetting"] = 0.4 - 0.8 * abs(s - 0.5) + 0.01 * data["config"]["seed"]

    changed = _tampered(out, tmp_path_factory.mktemp("hump") / "quick", hump)
    code, _, _ = cli("study", "report", changed)
    after = json.loads((changed / "claims.json").read_text())["claims"][0]
    assert code == 0 and after["verdict"] == "PASS" and math.isclose(after["estimate"], 0.4)


# --- the Hessian density heatmap (declared by the hessian evaluator) -----------------------------


def test_density_per_decade_integrates_to_the_positive_weight():
    from collapsebench_plugins.evaluators.hessian_figures import per_decade

    grid = np.linspace(-6, 4, 20001)
    values = per_decade({"nodes": [-1.0, 1e-3, 0.5, 20.0], "weights": [0.1, 0.2, 0.3, 0.4]}, grid)
    assert np.trapezoid(values, grid) == pytest.approx(0.9, abs=1e-6)
    # the mass of one node sits at its decade
    assert abs(grid[np.argmax(per_decade({"nodes": [20.0], "weights": [1.0]}, grid))] - math.log10(20.0)) < 1e-3
    # |λ| below the axis, of either sign, is drawn at its lower end (half the Gaussian inside the axis)
    near_zero = per_decade({"nodes": [-1e-8, 1e-9], "weights": [0.6, 0.4]}, grid)
    assert np.argmax(near_zero) == 0 and np.trapezoid(near_zero, grid) == pytest.approx(0.5, abs=1e-3)


def test_the_hessian_density_heatmap_renders_from_run_directories(tmp_path, cli):
    from collapsebench.declarations import catalog

    assert "hessian_density_over_tasks" in catalog().figures  # declared by the evaluator, not the host
    dirs = [write_run(tmp_path / f"{s}{seed}", strategy=s, seed=seed, n_experiences=5)
            for s in ("naive", "replay") for seed in (0, 1)]
    code, out, _ = cli("report", *dirs, "-o", tmp_path / "page.html")
    assert code == 0 and (tmp_path / "page-hessian_density_over_tasks.png").is_file()
    assert "not drawn: hessian_density_over_tasks" not in out

    from collapsebench.report.runs import load_runs
    from collapsebench_plugins.evaluators.hessian_figures import ROWS, density_over_tasks

    fig = density_over_tasks(load_runs(dirs))
    meshes = [c for ax in fig.axes if ax.get_label() != "<colorbar>" for c in ax.collections]
    assert len(meshes) == 2  # one row per strategy
    # synthetic start densities exist for tasks 1..4: four columns of ROWS cells
    assert meshes[0].get_array().shape == (ROWS, 4)
    assert fig.axes[0].get_yscale() == "log" and "task index" in fig.axes[1].get_xlabel()


def test_the_heatmap_says_what_is_missing():
    from collapsebench.report.figures import MissingData
    from collapsebench_plugins.evaluators.hessian_figures import density_over_tasks
    from report_synthetic import synthetic_result

    with pytest.raises(MissingData, match="evaluator 'hessian'"):
        density_over_tasks([Run(Path("/nowhere"), synthetic_result(include=()), "naive")])


def test_the_he_study_shows_the_heatmap():
    study = get_study(build_manager(), "he-hessian-collapse")
    assert "report:hessian_density_over_tasks" in study.figures


# --- Zhu & Jin's full version: split CIFAR-100 when the data is there ---------------------------


def test_zhu_jin_full_runs_split_cifar100_on_every_architecture(tmp_path, cifar100_root, mnist_root):  # noqa: F811
    study = get_study(build_manager(), "zhu-jin-forgetting-collapse")
    assert study.full.streams == ("split-mnist", "split-cifar100") and "split-cifar100" not in study.quick.streams
    jobs = build_jobs(study, False, Registry(build_manager()), tmp_path / "out", [], {"data_root": str(tmp_path)})
    cifar = {(j.config["model"], j.strategy) for j in jobs if j.config["stream"] == "split-cifar100"}
    assert cifar == {(m, s) for m in ("mlp", "convgru", "biconvgru", "resnet18") for s in ("naive", "lwf", "replay")}
    # tiny CIFAR-100 pickles and MNIST IDX files in their real formats: nothing is missing
    assert missing_data(jobs, Registry(build_manager())) == []


def test_zhu_jin_full_without_cifar100_stops_before_any_run_naming_the_files(tmp_path, mnist_root, cli):  # noqa: F811
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = cli("study", "run", "zhu-jin-forgetting-collapse", "--out", tmp_path / "study",
                         "--data-root", tmp_path)
    assert code == 2 and "Traceback" not in err
    assert "full version of study zhu-jin-forgetting-collapse" in err and "nothing was run" in err
    assert re.search(r"CIFAR-100 is not in the data root: missing train, test in \S*cifar-100-python", err)
    assert "split-mnist" not in err  # the MNIST files are there
    assert not (tmp_path / "study").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing downloaded
    # the dry run lists the runs and says what is missing, without failing
    code, out, _ = cli("study", "run", "zhu-jin-forgetting-collapse", "--dry-run", "--out", tmp_path / "study",
                       "--data-root", tmp_path)
    assert code == 0 and "split-cifar100/resnet18/replay/seed2" in out and "missing data: split-cifar100" in out


# --- the README's studies section ----------------------------------------------------------------


def test_the_readme_study_commands_name_real_studies_and_run(cli):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Studies"):]
    section = section[:section.index("\n## ", 1)]
    commands = re.findall(r"uv run collapsebench (study [^\n#]*)", section)
    assert {c.split()[1] for c in commands} >= {"list", "run", "report"}
    studies = set(load_studies(build_manager()))
    for command in commands:
        words = command.split()
        if words[1] == "run":
            assert words[2] in studies and "--quick" in words
    assert "docs/findings.md" in section
    code, out, _ = cli("study", "list")
    assert code == 0 and "ramasesh-intermediate-similarity" in out


def test_a_study_may_show_a_figure_its_plugins_evaluator_declares(tmp_path, cli):
    from collapsebench import declarations
    from test_declared_outputs import PLUGIN

    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "sharp-study.toml").write_text(
        AXES_STUDY.replace("[[claim]]", '[[figure]]\nname = "report:sharpness_curve"\n\n[[claim]]'))
    plugin = tmp_path / "sharp_plugin.py"
    plugin.write_text(PLUGIN + '''

from pathlib import Path


@hookimpl
def collapsebench_study_dirs():
    return [Path(__file__).parent / "studies"]
''')
    try:
        code, out, err = cli("study", "list", "--plugin", plugin)
        assert code == 0 and "sharp-study" in out, err
        assert get_study(build_manager([str(plugin)]), "sharp-study").figures == ("report:sharpness_curve",)
    finally:
        declarations.reset()  # later tests see only what they load
    with pytest.raises(CollapsebenchError, match="unknown figure 'report:sharpness_curve'"):
        read_study(tmp_path / "studies" / "sharp-study.toml")  # without the plugin, nobody declares it
    declarations.reset()
