"""Hostile configs and flags (issue 17, "Config and flags", "Silently accepted values").

Each case is a command that once ended in a traceback or was silently accepted. All of them
must now fail with exit 2 and a one-paragraph message, and all but one fail before Avalanche
is imported (they take milliseconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

HOSTILE = REPO / "tests" / "fixtures" / "hostile"


def toml(tmp_path, text: str, name: str = "config.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def expect_message(result, *fragments):
    code, out, err = result
    assert code == 2, (code, out, err)
    assert err.startswith("collapsebench: error: "), err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("flags, fragment", [
    (["--seed", "99999999999999999999"], "'seed': expected at most 4294967295"),
    (["--seed", "4294967296"], "'seed': expected at most 4294967295, got 4294967296"),
    (["--seed", "-1"], "'seed': expected at least 0"),
    (["--momentum", "nan"], "'momentum': expected a finite number, got nan"),
    (["--weight-decay", "inf"], "'weight_decay': expected a finite number, got inf"),
    (["--lr", "inf"], "'lr': expected a finite number"),
    (["--lr", "0"], "'lr': expected a positive number"),
    (["--epochs", "0"], "'epochs': expected at least 1"),
    (["--batch-size", "0"], "'batch_size': expected at least 1"),
    (["--threads", "-2"], "'threads': expected at least 0"),
    (["--probe-size", "0"], "'probe_size': expected at least 1"),
    (["--strategy", "replay", "--strategy-option", "mem_size=-5"], "option 'mem_size' of 'replay': expected at least 1, got -5"),
    (["--strategy", "cbp", "--strategy-option", "replacement_rate=nan"], "expected a finite number"),
    (["--stream-option", "n_experiences=0"], "option 'n_experiences' of 'split-digits': expected one of 1, 2, 5, 10, got 0"),
    (["--stream-option", "test_fraction=1.5"], "option 'test_fraction' of 'split-digits': expected at most 0.99"),
    # Once a ValueError deep in Avalanche, after its import, with its traceback.
    (["--stream-option", "n_experiences=3"], "option 'n_experiences' of 'split-digits': expected one of 1, 2, 5, 10, got 3"),
])
def test_numeric_flags_are_finite_and_in_range(cli, tmp_path, flags, fragment):
    expect_message(cli("run", *flags, "--out", tmp_path / "run"), fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, fragment", [
    (["base_options={n_experiences=0}"], "option 'n_experiences' of 'split-digits': expected one of 1, 2, 5, 10, got 0"),
    (["base_options={nosuch=1}"], "Unknown option of 'split-digits' 'nosuch'"),
    (["base_options={test_fraction=1.5}"], "option 'test_fraction' of 'split-digits': expected at most 0.99"),
    (["base_options=3"], "option 'base_options' of 'random-labels'"),
    (["base=nosuch"], "Unknown stream 'nosuch'"),
    (["base=random-labels"], "cannot use itself as its base stream"),
])
def test_random_labels_base_options_are_checked_before_avalanche_is_imported(tmp_path, options, fragment):
    """Once caught only when the base was built, after the 20-60 s Avalanche import."""
    flags = ["run", "--stream", "random-labels", "--stream-option", "base=split-digits"]
    for option in options:
        flags += ["--stream-option", option]
    probe = (
        "import sys; from collapsebench.cli import main; "
        f"code = main({[*flags, '--out', str(tmp_path / 'run')]!r}); "
        "print(code, sorted(m for m in ('avalanche', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip().splitlines()[-1] == "2 []", result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_random_labels_checks_the_base_options_before_its_data(cli, tmp_path):
    """A split-mnist base whose data is missing: the bad option is what the user must fix first."""
    expect_message(cli("run", "--stream", "random-labels", "--stream-option", "base_options={n_experiences=3}",
                       "--data-root", tmp_path / "nothing", "--out", tmp_path / "run"),
                   "option 'n_experiences' of 'split-mnist': expected one of 1, 2, 5, 10, got 3")


@pytest.mark.parametrize("text, fragment", [
    ("epochs = 99999999999999999999\n", "'epochs': expected at most 100000, got 99999999999999999999"),
    ("epochs = 9999999999\n", "'epochs': expected at most 100000"),
    ("lr = inf\n", "'lr': expected a finite number, got inf"),
    ("momentum = nan\n", "'momentum': expected a finite number"),
    ("plugins = [3]\n", "'plugins' must be a list of names (strings), got 3"),
    ('evaluators = ["weights", 3]\n', "'evaluators' must be a list of names (strings), got 3"),
    ('plugins = "name"\n', "--plugin 'name' is neither an installed"),  # one name, not four letters
    ("[stream_options]\nn_experiences = -1\n", "expected one of 1, 2, 5, 10, got -1"),
    ("stream_options = 3\n", "'stream_options' must be a table"),
    ("colour = 'red'\n", "Unknown config key 'colour'"),
])
def test_toml_values_are_checked(cli, tmp_path, text, fragment):
    expect_message(cli("run", "--config", toml(tmp_path, text), "--out", tmp_path / "run"), fragment)


def test_config_on_a_directory(cli, tmp_path):
    expect_message(cli("run", "--config", tmp_path), "is a directory")


def test_config_that_is_not_utf8(cli, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    expect_message(cli("run", "--config", path), "is not UTF-8 text")


def test_plugin_that_is_not_python(cli, tmp_path):
    path = tmp_path / "not_py.txt"
    path.write_text("hello")
    expect_message(cli("run", "--plugin", path), "must be Python source ending in .py")


def test_plugin_calling_sys_exit_at_import_is_named(cli):
    code, out, err = cli("list", "--plugin", HOSTILE / "exits_at_import.py")
    assert code == 2, err
    assert "collapsebench plugin 'exits_at_import'" in err and "called sys.exit(3) while being imported" in err


@pytest.mark.parametrize("shape, fragment", [
    ("int", "returned int from collapsebench_strategies(); expected a list of collapsebench.Strategy records"),
    ("single", "returned a single Strategy from collapsebench_strategies(); expected a list"),
])
def test_provider_hook_of_the_wrong_shape(cli, monkeypatch, shape, fragment):
    monkeypatch.setenv("HOSTILE_SHAPE", shape)
    monkeypatch.delitem(sys.modules, "collapsebench_user_plugin_shapes", raising=False)
    expect_message(cli("list", "--plugin", HOSTILE / "shapes.py"), "collapsebench plugin 'shapes'", fragment)


def test_out_on_an_existing_file(cli, tmp_path):
    (tmp_path / "file").write_text("")
    expect_message(cli("run", "--out", tmp_path / "file"), "exists and is not a folder")


def test_out_below_a_file(cli, tmp_path):
    (tmp_path / "file").write_text("")
    expect_message(cli("run", "--out", tmp_path / "file" / "run"), "is a file, not a folder")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_out_on_dev_full(cli):
    expect_message(cli("run", "--out", "/dev/full"), "exists and is not a folder")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only folder")
def test_out_in_a_read_only_directory(cli, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        expect_message(cli("run", "--out", folder / "run"), "is not writable")
    finally:
        folder.chmod(0o700)


def test_out_in_a_folder_that_refuses_writes(cli, tmp_path, monkeypatch):
    """The case above, where the tests run as root (CI does): root may write into a read-only
    folder, so the refusal the check asks the system about is simulated for that one folder."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    expect_message(cli("run", "--out", folder / "run"), "is not writable", f"(it would be made in {str(folder)!r})")
    expect_message(cli("run", "--out", folder), f"The run directory {str(folder)!r} is not writable")
    assert list(folder.iterdir()) == []


def test_a_run_directory_that_refuses_the_first_write_is_a_message(cli, tmp_path, monkeypatch):
    """Permission lost after the check (or a folder even root cannot write, on a read-only mount):
    the run's first write into it fails with PermissionError. A message, exit 2, nothing written."""
    from collapsebench import results

    run_dir = tmp_path / "run"

    def refuse(path, payload):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(results, "atomic_write_bytes", refuse)
    expect_message(cli("run", "--epochs", "1", "--probe-size", "100", "--out", run_dir),
                   f"Could not read or write {str(run_dir / 'config.json')!r}: Permission denied.",
                   "Check the permissions, or choose another --out.")
    assert not (run_dir / "results.json").exists() and not (run_dir / "model.pt").exists()


def test_disk_full_while_writing_is_a_message(tmp_path):
    """An OSError escaping a command (here ENOSPC) is reported by the CLI, not as a traceback."""
    import errno

    from collapsebench import cli as cli_module

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.json"))

    cli_module.build_parser()
    original = cli_module.COMMANDS["list"]
    cli_module.COMMANDS["list"] = full
    try:
        code = cli_module.main(["list"])
    finally:
        cli_module.COMMANDS["list"] = original
    assert code == 2


@pytest.mark.parametrize("existing, fragment", [
    ({"results.json": json.dumps({"status": "complete"})}, "already holds a run (results.json, status complete)"),
    ({"checkpoint.pkl": ""}, "holds an interrupted run: continue it with `collapsebench run --resume"),
])
def test_rerun_into_a_run_directory_needs_overwrite(cli, tmp_path, existing, fragment):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, text in existing.items():
        (run_dir / name).write_text(text)
    before = {p.name: p.read_text() for p in run_dir.iterdir()}
    expect_message(cli("run", "--out", run_dir), fragment, "--overwrite")
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before  # untouched


@pytest.mark.parametrize("content, fragment", [
    ("[1, 2, 3]", "must hold a table of config keys, got list"),
    ("{\"epochs\": 1e400}", "'epochs' must be int"),
    ("{\"seed\": 5000000000}", "'seed': expected at most 4294967295"),
    ("not json", "holds no readable config.json"),
])
def test_resume_validates_config_json(cli, tmp_path, content, fragment):
    (tmp_path / "config.json").write_text(content)
    expect_message(cli("run", "--resume", tmp_path), fragment)


def test_sweep_workers_zero(cli, tmp_path):
    expect_message(cli("sweep", "--track", "split-mnist-mlp", "--strategies", "naive", "--workers", "0",
                       "--out", tmp_path), "--workers must be at least 1, got 0")


@pytest.mark.parametrize("seeds, fragment", [
    ("0-100000000", "asks for 100,000,001 seeds; a sweep takes at most 10,000"),
    ("0-4294967296", "above the largest seed"),
    ("5-2", "runs backwards"),
])
def test_sweep_seed_ranges_are_bounded_before_expansion(cli, tmp_path, seeds, fragment):
    expect_message(cli("sweep", "--track", "split-mnist-mlp", "--strategies", "naive", "--seeds", seeds,
                       "--dry-run", "--out", tmp_path), fragment)


def test_parse_seeds_counts_without_expanding():
    """A huge request is refused in constant memory: the count is computed from the bounds."""
    import tracemalloc

    from collapsebench.errors import CollapsebenchError
    from collapsebench.sweep.grid import parse_seeds

    tracemalloc.start()
    with pytest.raises(CollapsebenchError):
        parse_seeds("0-4000000000")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    assert parse_seeds("0-2,2,7") == [0, 1, 2, 7]


def test_device_cuda_without_a_gpu(cli, tmp_path):
    """This one imports Avalanche (the device is checked before the data is read or the folder made)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    expect_message(cli("run", "--device", "cuda", "--out", tmp_path / "run"), "no usable CUDA GPU")
    assert not (tmp_path / "run").exists()
