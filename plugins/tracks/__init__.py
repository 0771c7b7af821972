"""Built-in benchmark tracks (the TOML files in the repository's ``benchmarks/tracks``) and the
built-in studies (the TOML files in ``plugins/studies``).

The wheel carries them as the data-only package ``collapsebench_tracks``, so an installed
collapsebench finds the same tracks as a source checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from collapsebench import hookimpl


@hookimpl
def collapsebench_track_dirs():
    # A namespace package: its search locations are the directories holding the files (an
    # editable install adds a path-hook entry that is not a directory, hence the filter).
    spec = importlib.util.find_spec("collapsebench_tracks")
    locations = spec.submodule_search_locations if spec else []
    return [Path(p) for p in locations if Path(p).is_dir()]


@hookimpl
def collapsebench_study_dirs():
    return [Path(__file__).resolve().parent.parent / "studies"]
