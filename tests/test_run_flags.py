"""`collapsebench run`'s flags are generated from RunConfig's fields (config.RUN_FLAGS), so the
parser, the flag list and the help's defaults cannot drift apart."""

from __future__ import annotations

import dataclasses

import pytest

from collapsebench.cli import build_parser
from collapsebench.config import FILE_ONLY, RUN_FLAGS, Flag, RunConfig, add_run_flags, build_config


def _run_parser():
    return next(a for a in build_parser()._actions if a.dest == "command").choices["run"]


def test_every_field_is_a_flag_or_says_why_not():
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    assert sorted(RUN_FLAGS.keys() | FILE_ONLY.keys()) == sorted(fields)
    assert not RUN_FLAGS.keys() & FILE_ONLY.keys()


def test_each_flag_parses_to_its_field_and_builds_a_config():
    given = {"stream": "permuted-mnist", "scenario": "task", "evaluators": "weights,cka", "seed": "7",
             "epochs": "2", "lr": "0.5", "optimizer": "adam", "momentum": "0.5", "loggers": "csv,tensorboard",
             "checkpoint_every": "3", "probe_size": "10", "threads": "2", "out": "runs/x"}
    argv = ["run"] + [item for field, value in given.items() for item in (RUN_FLAGS[field].flag(field), value)]
    argv += ["--download", "--tensorboard-figures"]
    args = build_parser().parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key in RUN_FLAGS and value is not None}
    config = build_config(flags)
    assert (config.seed, config.epochs, config.lr, config.optimizer, config.momentum) == (7, 2, 0.5, "adam", 0.5)
    assert config.evaluators == ["weights", "cka"] and config.loggers == ["csv", "tensorboard"]
    assert (config.download, config.tensorboard_figures, config.checkpoint_every, config.out) == (True, True, 3, "runs/x")
    untouched = build_parser().parse_args(["run"])
    assert all(getattr(untouched, field) is None for field in RUN_FLAGS)  # only given flags override


def test_types_and_choices_come_from_the_config():
    actions = {a.dest: a for a in _run_parser()._actions}
    assert actions["epochs"].type is int and actions["lr"].type is float and actions["stream"].type is str
    assert tuple(actions["optimizer"].choices) == ("sgd", "adam")
    assert tuple(actions["scenario"].choices) == ("class", "task", "domain")
    assert actions["loggers"].option_strings == ["--logger"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--epochs", "two"])


def test_a_new_field_gets_its_flag_without_a_cli_change(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    monkeypatch.setitem(RUN_FLAGS, "eval_batch_size", Flag("evaluation minibatch"))
    add_run_flags(parser)
    assert parser.parse_args(["--eval-batch-size", "64"]).eval_batch_size == 64


def test_one_run_directory_layout(tmp_path):
    from collapsebench.config import seed_dir, track_run_dir

    assert RunConfig(track="t", strategy="replay", seed=3).run_dir() == track_run_dir("runs", "t", "replay", 3)
    assert track_run_dir(tmp_path, "t", "replay", 3) == tmp_path / "t" / "replay" / "seed3"
    assert seed_dir(tmp_path, 2) == tmp_path / "seed2"
