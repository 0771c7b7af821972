"""Hashes that make a submission tamper-evident: its canonical JSON, and the strategy's source.

A strategy's source is the file of the module that defines its factory, the file of the
collapsebench plugin that registers it, and every module of the same top-level package that those
import, directly or through each other (found by reading their import statements, so nothing
is imported). The host (``collapsebench``) is left out: its version is in the environment.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HASH_PREFIX = "sha256:"


def canonical_json(data: Any) -> bytes:
    """One byte string per value: keys sorted, no whitespace, NaN refused."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def content_hash(submission: dict[str, Any]) -> str:
    """The hash over everything in a submission except the hash itself."""
    body = {key: value for key, value in submission.items() if key != "content_hash"}
    return HASH_PREFIX + sha256_hex(canonical_json(body))


def combined_hash(files: dict[str, str]) -> str:
    """One hash over ``{module name: file hash}``; module names, not paths, so it is portable."""
    listing = "".join(f"{module}\0{digest}\n" for module, digest in sorted(files.items()))
    return HASH_PREFIX + sha256_hex(listing.encode())


def _module_file(name: str) -> Path | None:
    """The source file of module ``name``, found without importing anything new."""
    module = sys.modules.get(name)
    if module is not None:
        file = getattr(module, "__file__", None)
        return Path(file) if file else None
    parent, _, last = name.rpartition(".")
    if not parent:
        try:
            spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported
        except (ImportError, ValueError):
            return None
        return Path(spec.origin) if spec is not None and spec.has_location and spec.origin else None
    parent_file = _module_file(parent)
    if parent_file is None or parent_file.name != "__init__.py":
        return None  # the parent is a plain module: ``name`` is an attribute of it, not a module
    for candidate in (parent_file.parent / f"{last}.py", parent_file.parent / last / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(module_name: str, path: Path) -> set[str]:
    """Module names that ``path``'s import statements may refer to (candidates, not checked)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return set()
    package = module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts)
                stem = f"{base}.{node.module}" if node.module else base
            else:
                stem = node.module or ""
            if stem:
                names.add(stem)
                names.update(f"{stem}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def source_files(root_modules: list[str]) -> dict[str, Path]:
    """The files of ``root_modules`` and of the modules of their own packages that they import."""
    tops = {name.split(".")[0] for name in root_modules}
    found: dict[str, Path] = {}
    pending = list(root_modules)
    while pending:
        name = pending.pop()
        if name in found or name.split(".")[0] not in tops or name.split(".")[0] == "collapsebench":
            continue
        path = _module_file(name)
        if path is None or path.suffix != ".py" or not path.is_file():
            continue
        found[name] = path
        pending.extend(sorted(_imported_names(name, path) - set(found)))
    return found


def strategy_source(manager, registry, component: str) -> dict[str, Any]:
    """Where one strategy component comes from, with a hash of its source."""
    entry = registry.entry("strategy", component)
    plugin = manager.get_plugin(entry.plugin)
    info = manager.info.get(entry.plugin)
    roots = [name for name in (getattr(plugin, "__name__", None), getattr(entry.record.factory, "__module__", None)) if name]
    files = {name: sha256_hex(path.read_bytes()) for name, path in source_files(roots).items()}
    return {
        "component": component,
        "plugin": entry.plugin,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
        "files": files,
        "sha256": combined_hash(files),
    }
