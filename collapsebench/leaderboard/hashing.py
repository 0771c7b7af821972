"""Hashes that make a submission tamper-evident: its canonical JSON, and the strategy's source.

A strategy's source is every file that its factory can run, as far as import statements tell:

- the file of the module that defines the factory, and of the collapsebench plugin that registers it;
- the modules those import at module level, and the modules imported inside the factory and inside
  the module's own functions and classes that the factory names (directly or through each other);
- from there on, every module of the same top-level package that an imported module imports,
  anywhere in it.

So a plugin module holding the factories of several strategies (the built-ins' ``__init__.py``)
is hashed whole, but the submodule that only another strategy's factory imports is not part of
this one's hash. Import statements are read, never executed. The host (``collapsebench``) is left
out: its version is in the environment.
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


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: As the entry function: follow only a module's module-level statements (a plugin's hooks are not the strategy).
MODULE_LEVEL = ""


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return None


def _import_targets(nodes, module_name: str, path: Path) -> set[str]:
    """Module names that the import statements among ``nodes`` (and below them) may refer to."""
    package = module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]
    names: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)])
                    stem = f"{base}.{node.module}" if node.module else base
                else:
                    stem = node.module or ""
                if stem:
                    names.add(stem)
                    names.update(f"{stem}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def _reachable_nodes(tree: ast.Module, function: str | None) -> list[ast.AST]:
    """The module-level statements, plus the top-level definitions ``function`` reaches by name.

    With :data:`MODULE_LEVEL`, the module-level statements alone; with no ``function`` (or one not
    defined at the top level, such as a lambda), every statement: the whole module.
    """
    definitions = {node.name: node for node in tree.body if isinstance(node, _DEFINITIONS)}
    if function != MODULE_LEVEL and function not in definitions:
        return list(tree.body)
    nodes = [node for node in tree.body if not isinstance(node, _DEFINITIONS)]
    pending, seen = [function], set()
    while pending:
        name = pending.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        nodes.append(definitions[name])
        pending.extend(n.id for n in ast.walk(definitions[name]) if isinstance(n, ast.Name))
    return nodes


def source_files(roots: list[tuple[str, str | None]]) -> dict[str, Path]:
    """The files a strategy's code can run: ``roots`` are ``(module, entry function or None)``."""
    tops = {name.split(".")[0] for name, _ in roots} - {"collapsebench"}
    found: dict[str, Path] = {}
    pending = list(roots)
    while pending:
        name, function = pending.pop()
        if name in found or name.split(".")[0] not in tops:
            continue
        path = _module_file(name)
        tree = _parse(path) if path is not None and path.suffix == ".py" and path.is_file() else None
        if tree is None:
            continue
        found[name] = path
        targets = _import_targets(_reachable_nodes(tree, function), name, path)
        pending.extend((target, None) for target in sorted(targets - set(found)))
    return found


def strategy_source(manager, registry, component: str) -> dict[str, Any]:
    """Where one strategy component comes from, with a hash of its source."""
    entry = registry.entry("strategy", component)
    plugin = manager.get_plugin(entry.plugin)
    info = manager.info.get(entry.plugin)
    factory = entry.record.factory
    factory_module = getattr(factory, "__module__", None)
    roots = [(factory_module, getattr(factory, "__name__", None))] if factory_module else []
    if getattr(plugin, "__name__", None) and plugin.__name__ != factory_module:
        roots.append((plugin.__name__, MODULE_LEVEL))
    files = {name: sha256_hex(path.read_bytes()) for name, path in source_files(roots).items()}
    return {
        "component": component,
        "plugin": entry.plugin,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
        "files": files,
        "sha256": combined_hash(files),
    }
