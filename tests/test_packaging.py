"""The wheel carries every package of the source tree: a forgotten one would work in the
editable development install and be missing from `pip install collapsebench`."""

from __future__ import annotations

import tomllib
import zipfile

from conftest import REPO


def test_every_python_package_is_declared():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(setuptools["packages"])
    on_disk = set()
    for package, directory in setuptools["package-dir"].items():
        root = REPO / directory
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            on_disk.add(".".join((package, *relative)))
    assert on_disk - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_built_wheel_holds_plugins_tracks_and_entry_points(tmp_path):
    import subprocess

    subprocess.run(["uv", "build", "--wheel", "--out-dir", str(tmp_path)], cwd=REPO, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("collapsebench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "collapsebench_plugins/strategies/__init__.py" in names
    assert "collapsebench_tracks/split-digits-mlp.toml" in names
    assert "collapsebench_plugins/studies/zhu-jin-forgetting-collapse.toml" in names  # the built-in studies
    assert "collapsebench/leaderboard/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[collapsebench]" in text and "builtin_strategies" in text
