"""Which collapsebench plugin an exception raised during training came from.

An Avalanche training plugin, strategy template or evaluator metric runs deep inside Avalanche's
loop, so the exception's own type says nothing about whose code failed. The traceback does: the
innermost frame whose source file belongs to a loaded collapsebench plugin names it.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path


def plugin_roots(manager) -> dict[str, Path]:
    """collapsebench plugin name -> the file (a module) or folder (a package) its code lives in."""
    roots = {}
    for name, plugin in manager.list_name_plugin():
        module = plugin if hasattr(plugin, "__file__") else sys.modules.get(getattr(type(plugin), "__module__", ""))
        path = getattr(module, "__file__", None)
        if not path:
            continue
        path = Path(path).resolve()
        roots[name] = path.parent if path.name == "__init__.py" else path
    return roots


def culprit(exc: BaseException, manager) -> str | None:
    """The collapsebench plugin whose code raised ``exc`` (innermost frame first), or None."""
    roots = plugin_roots(manager)
    core = Path(__file__).resolve().parent
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = Path(os.path.abspath(frame.filename))
        if core in path.parents:
            continue
        # The most specific root wins: a plugin module inside another plugin's package folder.
        owners = [(len(root.parts), name) for name, root in roots.items() if path == root or root in path.parents]
        if owners:
            return max(owners)[1]
    return None
