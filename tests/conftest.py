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
CACHE_ENV = "COLLAPSEBENCH_CACHE_DIR"


@pytest.fixture(scope="session", autouse=True)
def private_signing_key(tmp_path_factory):
    """Checkpoint signing keys go to a folder of this session, never the user's real home; set in
    os.environ so that the runs tests start as subprocesses (and sweep workers) share it."""
    from collapsebench.signing import HOME_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOME_ENV, str(tmp_path_factory.mktemp("collapsebench-home")))
        yield Path(os.environ[HOME_ENV])


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Caches (split-digits' split, data-file digests) go to a folder of this session, never the
    user's ~/.cache/collapsebench. Both caches resolve $COLLAPSEBENCH_CACHE_DIR when they are
    read or written, so setting it in os.environ here covers every test and the subprocesses
    tests start; one folder for the session keeps the first computation's result for the rest."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("collapsebench-cache")))
        yield Path(os.environ[CACHE_ENV])


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
