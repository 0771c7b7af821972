"""The report in TensorBoard: the custom-scalars layout, figures as images, the tensorboard command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from report_synthetic import synthetic_result, write_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from collapsebench.eventfiles import event_files, log_dirs
from collapsebench.report.tensorboard import (
    LAYOUT_TAG,
    PER_EXPERIENCE_CATEGORY,
    TensorBoardFigures,
    custom_scalars_layout,
    has_layout,
    log_run_directory,
    logdir_spec,
    truncated_result,
)


def read_layouts(run_dir: Path) -> list[layout_pb2.Layout]:
    layouts = []
    for path in event_files(run_dir):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == LAYOUT_TAG:
                    layouts.append(layout_pb2.Layout.FromString(value.tensor.string_val[0]))
    return layouts


def image_steps(run_dir: Path) -> dict[str, list[int]]:
    folders = log_dirs(run_dir)
    events = EventAccumulator(str(folders[0] if folders else run_dir), size_guidance={"images": 0})
    events.Reload()
    return {tag: [image.step for image in events.Images(tag)] for tag in events.Tags()["images"]}


def test_layout_groups_each_metrics_layers_and_phases_in_one_chart():
    records = synthetic_result()["metrics"]
    layout = custom_scalars_layout(records)
    charts = {title: spec[1][0] for category in layout.values() for title, spec in category.items()}
    activation = re.compile(charts["erank (activation), every layer"])
    for tag in ("erank/activation/fc1", "erank/activation/fc2", "erank/activation_iteration/fc2"):
        assert activation.match(tag), tag
    for tag in ("erank/weight/fc1", "erank/activation/fc1/histogram", "erank_peak_normalized/activation/fc1"):
        assert not activation.match(tag), tag
    assert re.match(charts["hessian_trace (model), every layer"], "hessian_trace/model_start/all")
    # records without a value (a density) have no scalar to chart
    assert "hessian_density (model), every layer" not in charts
    assert list(layout) == ["accuracy", "collapse: weight", "collapse: activation",
                            "representation similarity (CKA)", "Hessian spectrum", PER_EXPERIENCE_CATEGORY]
    assert list(layout["representation similarity (CKA)"]) == [f"cka (exp{j}), every layer" for j in range(3)]


def test_runner_helper_writes_the_layout_once_and_images_only_when_asked(tmp_path):
    result = synthetic_result(n_experiences=3)
    for images, directory in ((False, tmp_path / "plain"), (True, tmp_path / "images")):
        writer = SummaryWriter(str(directory))
        board = TensorBoardFigures(writer, strategy="naive", taps=result["taps"], n_experiences=3, images=images)
        for experience in range(3):
            partial = truncated_result(result, experience)
            board.after_experience(partial["accuracy_matrix"], partial["metrics"])
        writer.close()
        assert len(read_layouts(directory)) == 1
    assert image_steps(tmp_path / "plain") == {}
    steps = image_steps(tmp_path / "images")
    assert steps["report/accuracy_matrix"] == [0, 1, 2]
    assert steps["report/hessian_density"] == [0, 1, 2]
    assert steps["report/cka_by_layer"] == [1, 2]  # CKA needs a later experience
    assert steps["report/forgetting_vs_erank_drop"] == [2]  # forgetting needs the whole run


def test_per_experience_scalars_are_indexed_by_experience_and_charted_by_layer(tmp_path):
    result = synthetic_result(n_experiences=3)
    writer = SummaryWriter(str(tmp_path))
    board = TensorBoardFigures(writer, strategy="naive", taps=result["taps"], n_experiences=3)
    for experience in range(3):
        partial = truncated_result(result, experience)
        board.after_experience(partial["accuracy_matrix"], partial["metrics"])
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    erank = events.Scalars("per_experience/erank/activation/fc1")
    assert [e.step for e in erank] == [0, 1, 2]  # the experience index, not Avalanche's iteration count
    expected = [r["value"] for r in result["metrics"]
                if (r["name"], r["kind"], r["layer"], r["phase"]) == ("erank", "activation", "fc1", "end")]
    assert [e.value for e in erank] == pytest.approx(expected, rel=1e-6)
    assert [e.step for e in events.Scalars("per_experience/hessian_trace/model_start/all")] == [1, 2]
    last = events.Scalars("per_experience/accuracy/test_exp1")[-1]
    assert last.step == 2 and last.value == pytest.approx(result["accuracy_matrix"][2][1], rel=1e-6)
    mean_seen = events.Scalars("per_experience/accuracy/mean_seen")
    assert mean_seen[0].value == pytest.approx(result["accuracy_matrix"][0][0], rel=1e-6)
    (layout,) = read_layouts(tmp_path)
    (category,) = [c for c in layout.category if c.title == PER_EXPERIENCE_CATEGORY]
    chart = next(c for c in category.chart if c.title.startswith("erank (activation) by layer"))
    assert chart.title == "erank (activation) by layer: fc1, fc2"
    regexes = [re.compile(r) for r in chart.multiline.tag]
    assert [sum(bool(r.match(f"per_experience/erank/activation/{layer}")) for r in regexes)
            for layer in ("fc1", "fc2")] == [1, 1]  # one line per layer
    assert not any(r.match("per_experience/erank/weight/fc1") for r in regexes)


def test_truncated_result_is_what_the_run_knew_then():
    result = synthetic_result()
    after_one = truncated_result(result, 1)
    assert len(after_one["accuracy_matrix"]) == 2 and after_one["status"] == "partial"
    assert max(r["experience"] for r in after_one["metrics"]) == 1
    # the start-of-experience-2 Hessian is measured after experience 1's evaluation: not yet known
    assert not [r for r in after_one["metrics"] if r["phase"] == "start" and r["experience"] == 2]


def test_finished_run_gets_layout_and_figures_after_the_fact(tmp_path):
    run_dir = write_run(tmp_path / "run", include=("erank",))
    assert not has_layout(run_dir)
    written = log_run_directory(run_dir)
    assert written["layout"] and sorted(written["images"]) == [0, 1, 2, 3]
    # summaries exist only at the end, so the ranked-metrics bars are not drawn along the way
    assert written["images"][0] == ["average_accuracy", "accuracy_matrix", "weight_erank", "activation_erank",
                                    "plasticity_over_tasks"]
    assert image_steps(run_dir)["report/activation_erank"] == [0, 1, 2, 3]
    assert has_layout(run_dir)
    again = log_run_directory(run_dir, images=False)
    assert not again["layout"] and len(read_layouts(run_dir)) == 1  # TensorBoard uses the first layout
    # In a folder named after the run, so that TensorBoard does not call it "."
    assert log_dirs(run_dir) == [run_dir / "split-digits-mlp-naive-seed0"]


def test_a_run_from_before_the_per_run_folder_keeps_one_folder(tmp_path):
    """Its events in the run directory itself: the report's go beside them, not into a second run."""
    run_dir = write_run(tmp_path / "old", include=("erank",))
    writer = SummaryWriter(str(run_dir))
    writer.add_scalar("Top1_Acc_Stream/eval_phase/test_stream/Task000", 0.5, 1)
    writer.close()
    log_run_directory(run_dir, images=False)
    assert log_dirs(run_dir) == [run_dir] and len(event_files(run_dir)) == 2


def test_logdir_spec_names_runs_uniquely(tmp_path):
    a, b = tmp_path / "x" / "seed0", tmp_path / "y" / "seed0"
    spec = logdir_spec([a, b, tmp_path / "odd,name:1"])
    assert spec == f"seed0:{a},seed0-2:{b},odd_name_1:{tmp_path / 'odd,name:1'}"


def test_tensorboard_command_dry_run(tmp_path, cli):
    one, two = write_run(tmp_path / "naive"), write_run(tmp_path / "replay", strategy="replay")
    code, out, _ = cli("tensorboard", one, "--dry-run", "--port", "6200")
    assert code == 0 and out.split()[-4:] == ["--logdir_spec", f"naive:{one.resolve()}", "--port", "6200"]
    code, out, _ = cli("tensorboard", one, two, "--dry-run")
    assert f"--logdir_spec naive:{one.resolve()},replay:{two.resolve()}" in out
    code, _, err = cli("tensorboard", tmp_path / "missing", "--dry-run")
    assert code == 2 and "No such run directory" in err
    # A run directory whose events lie in its run folder is given as that folder: shown as "naive".
    log_run_directory(one, images=False)
    code, out, _ = cli("tensorboard", one, "--dry-run")
    assert out.split()[-2:] == ["--logdir_spec", f"naive:{one.resolve() / 'split-digits-mlp-naive-seed0'}"]


def test_registering_the_report_commands_imports_nothing_heavy():
    code = (
        "import argparse, sys, collapsebench.report.cli as r; "
        "r.add_commands(argparse.ArgumentParser().add_subparsers(), lambda parser: None); "
        "print(sorted(m for m in ('matplotlib', 'torch', 'tensorboard', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_commands_are_listed_in_help(capsys):
    from collapsebench.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert re.search(r"^\s+report\s+draw the collapse figures", help_text, re.M)
    assert re.search(r"^\s+tensorboard\s+open TensorBoard", help_text, re.M)
