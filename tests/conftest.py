"""Shared fixtures: the CLI run in-process, and the real data when it is here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collapsebench.cli import main

REPO = Path(__file__).resolve().parent.parent
FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
SHARED_DATA = Path(os.environ.get("COLLAPSEBENCH_DATA_ROOT", REPO.parent / "shared" / "data"))

# A small budget that still trains every experience: keeps end-to-end tests to seconds.
QUICK = ["--epochs", "3", "--probe-size", "200"]


@pytest.fixture
def cli(capsys):
    """Run ``collapsebench ARGS`` in this process; return (exit code, stdout, stderr)."""

    def invoke(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture(scope="session")
def shared_mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"the shared MNIST sample is not at {SHARED_DATA} (set COLLAPSEBENCH_DATA_ROOT)")
    return SHARED_DATA
