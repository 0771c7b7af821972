"""The public API of collapsebench: what plugins may import, and that importing it stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import collapsebench
from conftest import REPO

PLUGINS = REPO / "plugins"
#: What a collapsebench plugin may import from the host: the package itself and the math.
PUBLIC_MODULES = ("collapsebench", "collapsebench.metrics")


def _is_public(module: str) -> bool:
    return any(module == public or module.startswith(public + ".") and public != "collapsebench"
               for public in PUBLIC_MODULES)


def _host_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "collapsebench":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "collapsebench"]
    return found


def test_public_module_rule_itself():
    assert _is_public("collapsebench") and _is_public("collapsebench.metrics") and _is_public("collapsebench.metrics.ranks")
    assert not _is_public("collapsebench.runner") and not _is_public("collapsebench.metricsx")


def test_built_in_plugins_import_only_the_public_api():
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted(PLUGINS.rglob("*.py"))
        for line, module in _host_imports(path)
        if not _is_public(module)
    ]
    assert not offenders, "built-in plugins must import from `collapsebench` itself:\n" + "\n".join(offenders)


def test_the_scan_sees_a_private_import(tmp_path):
    sample = tmp_path / "p.py"
    sample.write_text("def f():\n    from collapsebench.runner import make_template\nimport collapsebench.probe\n")
    assert sorted(_host_imports(sample)) == [(2, "collapsebench.runner"), (3, "collapsebench.probe")]


@pytest.mark.parametrize("name", sorted(collapsebench.__all__))
def test_every_exported_name_resolves(name):
    assert getattr(collapsebench, name) is not None
    assert name in dir(collapsebench)


def test_lazy_names_come_from_their_modules():
    from collapsebench import evaluation, fastdata, probe, runner

    assert collapsebench.CollapseMetric is evaluation.CollapseMetric
    assert collapsebench.Measurement is evaluation.Measurement
    assert collapsebench.moment_key is probe.moment_key
    assert collapsebench.make_template is runner.make_template
    assert collapsebench.TensorBatchesPlugin is fastdata.TensorBatchesPlugin
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        collapsebench.not_a_name  # noqa: B018


def test_import_collapsebench_loads_neither_torch_nor_avalanche():
    probe = ("import sys, collapsebench; from collapsebench import Option, Tap, taps_of, CollapsebenchError;"
             "print(sorted(m for m in ('torch', 'avalanche', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_public_api_is_documented():
    text = (REPO / "docs" / "plugin_hooks.md").read_text()
    missing = [name for name in collapsebench.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/plugin_hooks.md does not describe {missing}"


def test_uncounted_gathering_restores_the_data_time():
    from collapsebench import fastdata, uncounted_gathering

    before = fastdata.gather_seconds
    with uncounted_gathering():
        fastdata.gather(_Samples())
        assert fastdata.gather_seconds > before
    assert fastdata.gather_seconds == before


class _Samples:
    def __len__(self):
        return 3

    def __getitem__(self, i):
        import torch

        return torch.full((2,), float(i)), i, 0
