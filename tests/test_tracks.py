"""Benchmark tracks: discovery through the hook, protocol enforcement, and running one."""

from __future__ import annotations

import json
import textwrap

import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench.manager import build_manager
from collapsebench.tracks import load_tracks, read_track


def _track_plugin(tmp_path, toml_text: str, name: str = "mine") -> str:
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    (tracks / f"{name}.toml").write_text(textwrap.dedent(toml_text))
    plugin = tmp_path / "track_plugin.py"
    plugin.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from collapsebench import hookimpl

        @hookimpl
        def collapsebench_track_dirs():
            return [Path({str(tracks)!r})]
    """))
    return str(plugin)


def test_builtin_tracks_are_listed(cli):
    code, out, err = cli("list", "tracks", "--json")
    assert code == 0
    names = {t["name"]: t for t in json.loads(out)["tracks"]}
    assert "split-digits-mlp" in names
    assert names["split-digits-mlp"]["seeds"]


def test_every_builtin_track_names_known_components():
    from collapsebench.config import build_config, resolve_component_options
    from collapsebench.registry import Registry

    manager = build_manager()
    registry = Registry(manager)
    for track in load_tracks(manager).values():
        resolve_component_options(build_config(dict(track.config)), registry)


def test_a_track_from_a_plugin_is_found(tmp_path):
    plugin = _track_plugin(tmp_path, """
        [track]
        description = "a tiny track"
        seeds = [4, 5]
        [run]
        stream = "split-digits"
        model = "mlp"
        epochs = 1
    """)
    tracks = load_tracks(build_manager([plugin]))
    assert tracks["mine"].seeds == (4, 5) and tracks["mine"].config["epochs"] == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ('[track]\nseeds = [0]\n[run]\nstream = "split-digits"\nmodel = "mlp"\nstrategy = "naive"\n',
         "run.strategy is not a protocol key"),
        ('[track]\nseeds = []\n[run]\nstream = "split-digits"\nmodel = "mlp"\n', "track.seeds must be"),
        ('[track]\nseeds = [0]\n[run]\nmodel = "mlp"\n', "run.stream is required"),
        ('[track]\nseeds = [0]\nseed = 1\n[run]\nstream = "s"\nmodel = "m"\n', "unknown key track.seed"),
    ],
)
def test_invalid_track_files_are_explained(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(CollapsebenchError, match=message):
        read_track(path)


def test_a_track_fixes_its_protocol(cli):
    code, out, err = cli("run", "--track", "split-digits-mlp", "--epochs", "1")
    assert code == 2 and "fixes epochs" in err
    code, out, err = cli("run", "--track", "split-digit-mlp")
    assert code == 2 and "Did you mean 'split-digits-mlp'?" in err


def test_running_a_track_runs_its_seeds(cli, tmp_path):
    plugin = _track_plugin(tmp_path, """
        [track]
        seeds = [0, 1]
        [run]
        stream = "split-digits"
        model = "mlp"
        epochs = 1
        probe_size = 50
        evaluators = []
    """)
    code, out, err = cli("run", "--plugin", plugin, "--track", "mine", "--strategy", "naive", "--out", tmp_path / "runs")
    assert code == 0, err
    for seed in (0, 1):
        result = json.loads((tmp_path / "runs" / f"seed{seed}" / "results.json").read_text())
        assert result["config"]["track"] == "mine" and result["config"]["seed"] == seed
        assert result["config"]["epochs"] == 1


def test_the_plasticity_tracks_follow_the_papers_protocols():
    """Dohare's task counts, newest-task-only evaluation and a plasticity ranking; forgetting
    tracks keep the full matrix and the default ranking."""
    from collapsebench.config import build_config
    from collapsebench.protocols import parse

    tracks = load_tracks(build_manager())
    for name, tasks in (("permuted-mnist-mlp", 800), ("continual-imagenet32-convnet", 2000),
                        ("permuted-mnist-sample-mlp", 100)):
        track = tracks[name]
        assert track.config["stream_options"]["n_experiences"] == tasks, name
        assert parse(build_config(dict(track.config)).evaluation).name == "current", name
        assert track.rank == ("plasticity_retention", "capacity_retention"), name
    sample = tracks["permuted-mnist-sample-mlp"].config
    # the issue-6 setting in which naive SGD measurably loses plasticity on the shared sample
    assert (sample["lr"], sample["momentum"], sample["batch_size"], sample["model_options"]["widths"]) == (
        0.03, 0.9, 16, [100, 100])
    for name in ("split-digits-mlp", "split-mnist-mlp", "split-cifar100-resnet18"):
        assert "evaluation" not in tracks[name].config and tracks[name].rank is None, name


def test_a_track_fixes_its_evaluation_protocol(cli):
    code, out, err = cli("run", "--track", "permuted-mnist-sample-mlp", "--evaluation", "full")
    assert code == 2 and "fixes evaluation" in err, err
