"""Building the plugin manager: entry points first, then the user's ``--plugin`` modules.

Built-in capabilities are ordinary entry points of the ``collapsebench`` group, so they load
exactly the way a third-party package's plugin does. Nothing loads at import time: the CLI
builds a manager when it needs one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pluggy

from collapsebench import hookspecs
from collapsebench.errors import CollapsebenchError

ENTRY_POINT_GROUP = "collapsebench"


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded collapsebench plugin came from, for listings and results."""

    name: str
    source: str  # "entry point", "module" or "file"
    location: str  # entry point value, module name or file path
    distribution: str | None = None
    version: str | None = None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus a record of where each plugin came from."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}

    def register_plugin(self, plugin: object, info: PluginInfo) -> None:
        try:
            self.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise CollapsebenchError(
                f"collapsebench plugin {info.name!r} ({info.source} {info.location}) was rejected: {exc}"
            ) from None
        except ValueError as exc:  # pluggy: a name or object registered twice
            raise CollapsebenchError(f"collapsebench plugin {info.name!r} could not be registered: {exc}") from None
        self.info[info.name] = info

    def call_each(self, hook_name: str, **kwargs) -> list[tuple[str, object]]:
        """Call every implementation of a hook, in load order, as ``(plugin name, result)``.

        Unlike ``manager.hook.<name>()``, a failure is reported with the plugin that raised it.
        """
        results = []
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except (CollapsebenchError, KeyboardInterrupt):
                raise
            except (Exception, SystemExit) as exc:
                raise CollapsebenchError(
                    f"collapsebench plugin {impl.plugin_name!r} failed in {hook_name}(): {type(exc).__name__}: {exc}",
                    details=traceback.format_exc(),
                ) from None
            results.append((impl.plugin_name, result))
        return results


def build_manager(plugins: Sequence[str] = (), *, entry_points: bool = True) -> PluginManager:
    """A plugin manager with the installed entry points and the given ``--plugin`` specs.

    A spec is an installed entry-point name, an importable module, or a path to a ``.py`` file.
    """
    manager = PluginManager()
    installed = _entry_points()
    if entry_points:
        for entry_point in installed.values():
            _load_entry_point(manager, entry_point)
    for spec in plugins:
        if spec in manager.info:
            continue  # an installed entry point, already loaded
        if spec in installed:
            _load_entry_point(manager, installed[spec])
        elif spec.endswith(".py") or "/" in spec or Path(spec).is_file():
            _load_file(manager, Path(spec))
        else:
            _load_module(manager, spec)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = manager.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise CollapsebenchError(f"collapsebench plugin {plugin_name!r} was rejected: {exc}") from None
    return manager


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _import_failure(what: str) -> CollapsebenchError:
    exc_type, exc, _ = sys.exc_info()
    if isinstance(exc, SystemExit):  # a plugin must not end the process; say who tried
        reason = f"it called sys.exit({exc.code!r}) while being imported"
    else:
        reason = f"{exc_type.__name__}: {exc}"
    return CollapsebenchError(
        f"{what} failed to import: {reason}. Fix the plugin or leave it out; its traceback follows.",
        details=traceback.format_exc(),
    )


def _load_entry_point(manager: PluginManager, entry_point: importlib.metadata.EntryPoint) -> None:
    distribution = entry_point.dist
    info = PluginInfo(
        name=entry_point.name,
        source="entry point",
        location=entry_point.value,
        distribution=distribution.name if distribution else None,
        version=distribution.version if distribution else None,
    )
    try:
        plugin = entry_point.load()
    except (Exception, SystemExit):
        where = f" from distribution {info.distribution} {info.version}" if info.distribution else ""
        raise _import_failure(f"collapsebench plugin {entry_point.name!r} (entry point {entry_point.value}{where})") from None
    manager.register_plugin(plugin, info)


def _load_module(manager: PluginManager, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name.split(".")[0] or exc.name == module_name:
            raise CollapsebenchError(
                f"--plugin {module_name!r} is neither an installed collapsebench entry point "
                f"({', '.join(sorted(_entry_points())) or 'none installed'}), an importable module, "
                "nor a path to a .py file."
            ) from None
        raise _import_failure(f"collapsebench plugin {module_name!r} (module)") from None
    except (Exception, SystemExit):
        raise _import_failure(f"collapsebench plugin {module_name!r} (module)") from None
    manager.register_plugin(module, PluginInfo(module_name, "module", module_name, *_distribution_of(module_name)))


def _load_file(manager: PluginManager, path: Path) -> None:
    if not path.is_file():
        raise CollapsebenchError(f"--plugin {str(path)!r}: no such file.")
    if path.suffix != ".py":
        raise CollapsebenchError(f"--plugin {str(path)!r}: a collapsebench plugin file must be Python source ending in .py.")
    name = path.stem
    module_name = f"collapsebench_user_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit):
        del sys.modules[module_name]
        raise _import_failure(f"collapsebench plugin {name!r} (file {path})") from None
    manager.register_plugin(module, PluginInfo(name, "file", str(path.resolve())))


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    top = module_name.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top)
    if not names:
        return None, None
    return names[0], importlib.metadata.version(names[0])
