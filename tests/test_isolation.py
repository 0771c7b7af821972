"""The test run writes no caches into the user's home (tests/conftest.py's private_cache_dir)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_caches_resolve_to_the_sessions_folder(private_cache_dir):
    from collapsebench_plugins.streams import datafiles, digits

    home_cache = Path("~/.cache/collapsebench").expanduser()
    for path in (digits._cache_file(0, 0.2), datafiles._cache_path()):
        assert path is not None and path.is_relative_to(private_cache_dir)
        assert not path.is_relative_to(home_cache)


def test_a_subprocess_inherits_the_sessions_cache_folder(private_cache_dir):
    code = "from collapsebench_plugins.streams import datafiles; print(datafiles._cache_path())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).is_relative_to(private_cache_dir)
