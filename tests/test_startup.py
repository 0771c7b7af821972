"""Start-up: what a run imports (collapsebench/avalanche_imports.py) and what answers without it.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collapsebench import avalanche_imports
from conftest import FIXTURE_PLUGINS, REPO

#: Packages a run must not execute: the ones deferred and what they would drag in.
HEAVY = ("qpsolvers", "jax", "jaxopt", "cvxopt", "osqp", "wandb", "torchmetrics", "scipy.signal", "matplotlib",
         "matplotlib.pyplot", "torchvision.models", "torchvision.ops", "torch._dynamo", "sympy", "triton", "GPUtil",
         "gdown")

#: A short default run in a fresh process; prints what it imported.
RUN_AND_REPORT = """
import json, sys
from collapsebench.cli import main
from collapsebench import avalanche_imports
code = main(["run", "--epochs", "1", "--probe-size", "50", "--out", sys.argv[1]])
states = {name: ("absent" if name not in sys.modules else
                 "deferred" if avalanche_imports.is_deferred(sys.modules[name]) else "executed")
          for name in {*sys.argv[2].split(","), *avalanche_imports.DEFERRED}}
files = sorted(m.__file__ for n, m in list(sys.modules.items())
               if n.split(".")[0] == "avalanche" and not avalanche_imports.is_deferred(m) and getattr(m, "__file__", None))
print(json.dumps({"code": code, "executed": avalanche_imports.executed, "states": states, "avalanche_files": files}))
"""


def _python(code: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != avalanche_imports.EAGER_ENV}
    environment.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          env=environment, timeout=timeout)


@pytest.fixture(scope="module")
def lean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lean") / "run"
    cache = {"COLLAPSEBENCH_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    # The default stream's split, cached as a run before this one would have left it.
    assert _python("from collapsebench_plugins.streams.digits import split_digits; split_digits(0, 0.2)",
                   env=cache).returncode == 0
    done = _python(RUN_AND_REPORT, str(out), ",".join((*HEAVY, "sklearn", "scipy")), env=cache)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return report


def test_a_run_executes_none_of_the_deferred_packages(lean_run):
    executed = {name: state for name, state in lean_run["states"].items() if state == "executed"}
    assert executed == {}, f"a default run executed {sorted(executed)}: see collapsebench/avalanche_imports.py"
    assert lean_run["executed"] == []


def test_a_run_with_the_digits_split_cached_imports_no_scikit_learn(lean_run):
    assert lean_run["states"]["sklearn"] == "absent" and lean_run["states"]["scipy"] == "absent"


def test_the_cached_digits_split_is_what_scikit_learn_returns(tmp_path, monkeypatch):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from collapsebench_plugins.streams.digits import split_digits

    monkeypatch.setenv("COLLAPSEBENCH_CACHE_DIR", str(tmp_path))
    digits = load_digits()
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    expected = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=7)
    computed = split_digits(7, 0.3)
    (cache_file,) = (tmp_path / "split-digits").iterdir()
    cached = split_digits(7, 0.3)
    for got in (computed, cached):
        for array, want in zip(got[:4], expected):
            assert array.dtype == want.dtype and np.array_equal(array, want)
    assert computed[4] == cached[4]
    cache_file.write_bytes(b"not an npz")  # a damaged cache is computed again, not trusted
    assert np.array_equal(split_digits(7, 0.3)[0], expected[0])


def test_every_deferred_module_is_one_the_run_imports(lean_run):
    # A table entry that nothing imports any more is stale: the pinned versions changed.
    stale = sorted(name for name in avalanche_imports.DEFERRED if lean_run["states"][name] != "deferred")
    assert stale == []


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (not inside functions)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def test_stand_ins_are_exactly_what_avalanche_takes_from_deferred_modules(lean_run):
    deferred = avalanche_imports.DEFERRED
    taken, unhandled = set(), set()

    def under_deferred(module: str) -> bool:
        return module not in deferred and any(module.startswith(d + ".") for d in deferred)

    for path in lean_run["avalanche_files"]:
        for node in _module_level_imports(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.Import):
                unhandled.update((path, a.name) for a in node.names if under_deferred(a.name))
            elif node.level == 0 and node.module in deferred:
                taken.update((node.module, a.name) for a in node.names if f"{node.module}.{a.name}" not in deferred)
            elif node.level == 0 and under_deferred(node.module):
                unhandled.add((path, node.module))
    assert unhandled == set(), "Avalanche imports a child of a deferred package that is not deferred itself"
    expected = {(module, name) for module, names in deferred.items() for name, kind in names.items()
                if kind in (avalanche_imports.FUNCTION, avalanche_imports.CLASS)}
    assert taken == expected


def test_switched_off_by_the_environment():
    done = _python("from collapsebench import avalanche_imports as a; print(a.install())",
                   env={avalanche_imports.EAGER_ENV: "1"})
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_accuracy_matrix_and_model_identical_with_eager_imports(tmp_path):
    runs = {}
    for label, eager in (("lean", "0"), ("eager", "1")):
        done = _python(RUN_AND_REPORT, str(tmp_path / label), ",".join(HEAVY), env={avalanche_imports.EAGER_ENV: eager})
        assert done.returncode == 0, done.stderr
        runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["lean"]["states"]["wandb"] == "deferred" and runs["eager"]["states"]["wandb"] == "executed"
    lean, eager = (json.loads((tmp_path / label / "results.json").read_text()) for label in ("lean", "eager"))
    assert lean["accuracy_matrix"] == eager["accuracy_matrix"]
    assert lean["metrics"] == eager["metrics"]
    assert (tmp_path / "lean" / "model.pt").read_bytes() == (tmp_path / "eager" / "model.pt").read_bytes()


@pytest.mark.slow
def test_a_plugin_using_gem_wandb_torchvision_and_matplotlib_works(tmp_path):
    code = ("import sys; from collapsebench.cli import main; "
            "sys.exit(main(['run', '--plugin', sys.argv[1], '--strategy', 'heavy_gem', '--epochs', '1', "
            "'--probe-size', '50', '--evaluators', '', '--out', sys.argv[2]]))")
    done = _python(code, str(FIXTURE_PLUGINS / "heavy_imports.py"), str(tmp_path / "run"),
                   env={avalanche_imports.TRACE_ENV: "1"})
    assert done.returncode == 0, done.stderr
    for name in ("qpsolvers", "wandb", "torchvision.models", "matplotlib.pyplot"):
        assert f"deferred import of {name} runs now" in done.stderr
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["status"] == "complete"


#: Runs ``collapsebench ARGS`` in a fresh process; prints its exit code and whether torch or
#: Avalanche were imported. Timing would be flaky on a shared machine; imports are not.
CLI_AND_REPORT = """
import json, sys
from collapsebench.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules,
                  "avalanche": any(n.split(".")[0] == "avalanche" for n in sys.modules)}))
"""


def _cli_imports(*args) -> tuple[dict, str]:
    done = _python(CLI_AND_REPORT, *map(str, args), timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def _complete_run(directory: Path) -> Path:
    from collapsebench.config import build_config

    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(build_config({"out": str(directory)}).to_dict()))
    (directory / "results.json").write_text(json.dumps({"status": "complete"}))
    return directory


@pytest.mark.parametrize("case", ["resume-complete", "missing-data", "incomplete-data", "bad-option",
                                  "unknown-plugin", "refused-track-flag"])
def test_answers_without_importing_torch(case, tmp_path):
    incomplete = tmp_path / "incomplete" / "MNIST" / "raw"
    incomplete.mkdir(parents=True)
    (incomplete / "train-images-idx3-ubyte").write_bytes(b"")
    args, code, says = {
        "resume-complete": (["run", "--resume", _complete_run(tmp_path / "done")], 0, "already complete"),
        "missing-data": (["run", "--stream", "split-mnist", "--data-root", tmp_path / "nothing"], 2, "MNIST"),
        "incomplete-data": (["run", "--stream", "permuted-mnist", "--data-root", tmp_path / "incomplete"], 2,
                            "t10k-labels-idx1-ubyte"),
        "bad-option": (["run", "--stream-option", "n_experiences=99"], 2, "n_experiences"),
        "unknown-plugin": (["run", "--plugin", "no_such_collapsebench_plugin"], 2, "no_such_collapsebench_plugin"),
        "refused-track-flag": (["run", "--track", "split-digits-mlp", "--model-option", "hidden=[8]"], 2, "fixes"),
    }[case]
    report, output = _cli_imports(*args)
    assert report["code"] == code, output
    assert says in output
    assert not report["torch"] and not report["avalanche"], f"{case} imported torch or Avalanche"


def test_data_checks_name_the_files_the_loaders_read():
    from collapsebench_plugins.streams import cifar, imagenet32, layout, mnist

    assert layout.MNIST[0] == str(mnist.mnist_folder(Path("")).as_posix()) and layout.MNIST[1] == tuple(mnist.FILES.values())
    assert layout.CIFAR10[:2] == (cifar.CIFAR10_FOLDER, tuple(cifar.CIFAR10_FILES))
    assert layout.CIFAR100[:2] == (cifar.CIFAR100_FOLDER, tuple(cifar.CIFAR100_FILES))
    assert layout.IMAGENET32[:2] == (imagenet32.FOLDER, tuple(imagenet32.TRAIN_FILES))
    assert layout.IMAGENET32_VAL == imagenet32.VAL_FILE


def test_a_stream_check_runs_with_the_streams_resolved_options(tmp_path):
    from collapsebench.config import build_config
    from collapsebench.manager import build_manager
    from collapsebench.preflight import check_data
    from collapsebench.registry import Registry
    from collapsebench.errors import CollapsebenchError

    registry = Registry(build_manager([]))
    root = tmp_path / "imagenet32"
    root.mkdir()
    for name in imagenet_train_files():
        (root / name).write_bytes(b"")
    base = {"stream": "continual-imagenet32", "model": "convnet", "data_root": str(tmp_path)}
    check_data(build_config(base), registry)  # the training batches are all it reads by default
    with pytest.raises(CollapsebenchError, match="val_data.npz"):
        check_data(build_config({**base, "stream_options": {"test_images": "val"}}), registry)
    with pytest.raises(CollapsebenchError, match="cifar-100-python"):
        check_data(build_config({"stream": "random-labels", "data_root": str(tmp_path),
                                 "stream_options": {"base": "split-cifar100"}}), registry)


def imagenet_train_files():
    from collapsebench_plugins.streams import layout

    return layout.IMAGENET32_TRAIN
