"""Building the plugin manager: entry points first, then the user's ``--plugin`` modules.

Built-in capabilities are ordinary entry points of the ``collapsebench`` group, so they load
exactly the way a third-party package's plugin does. Nothing loads at import time: the CLI
builds a manager when it needs one.

Switches, as pytest has them (docs/plugin_hooks.md):

- ``-p no:NAME`` or ``--disable-plugin NAME`` keeps the plugin named NAME from loading;
- ``COLLAPSEBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in entry points and the
  ``--plugin`` specs, so one broken third-party package cannot fail every command;
- ``COLLAPSEBENCH_TRACE_PLUGINS=1`` prints each hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pluggy

from collapsebench import hookspecs
from collapsebench.errors import CollapsebenchError

ENTRY_POINT_GROUP = "collapsebench"
#: The distribution whose entry points are the built-ins: they load even without autoload.
BUILTIN_DISTRIBUTION = "collapsebench"
DISABLE_PREFIX = "no:"
AUTOLOAD_ENV = "COLLAPSEBENCH_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "COLLAPSEBENCH_TRACE_PLUGINS"


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
        wrappers = sorted(
            caller.name for caller in self.get_hookcallers(plugin) or ()
            for impl in caller.get_hookimpls() if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)
        )
        if wrappers:
            self.unregister(plugin)
            raise CollapsebenchError(
                f"collapsebench plugin {info.name!r} ({info.source} {info.location}) marks "
                f"{', '.join(wrappers)} as a hook wrapper. collapsebench calls each implementation on its own, "
                "so that a failure names its plugin, and cannot wrap the others: drop wrapper=True/hookwrapper=True "
                "(tryfirst=True or trylast=True set the order)."
            )
        self.info[info.name] = info

    def call_each(self, hook_name: str, **kwargs) -> list[tuple[str, object]]:
        """Call every implementation of a hook, as ``(plugin name, result)`` pairs.

        The order is pluggy's: ``tryfirst`` implementations, then the others with the last
        loaded plugin first (a ``--plugin`` before the built-ins), then ``trylast`` ones.
        Each implementation goes through pluggy's own call path, one at a time, so that hook
        call monitoring sees it and a failure is reported with the plugin that raised it.
        """
        caller = getattr(self.hook, hook_name)
        impls = list(reversed(caller.get_hookimpls()))
        results = []
        for impl in impls:
            others = [other.plugin for other in impls if other is not impl]
            try:
                returned = self.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
                result = returned[0] if returned else None  # pluggy leaves out a None result
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

    A spec is an installed entry-point name, an importable module, or a path to a ``.py`` file;
    ``no:NAME`` keeps the plugin NAME from loading instead.
    """
    from collapsebench import avalanche_imports

    avalanche_imports.install()  # plugins may import Avalanche at module level
    manager = PluginManager()
    if os.environ.get(TRACE_ENV, "").strip() not in ("", "0"):
        trace_hook_calls(manager)
    installed = _entry_points()
    disabled = {spec[len(DISABLE_PREFIX):] for spec in plugins if spec.startswith(DISABLE_PREFIX)}
    for name in sorted(disabled):
        if not name:
            raise CollapsebenchError("-p no:NAME / --disable-plugin NAME needs the name of a collapsebench plugin.")
        if name not in installed and name not in plugins:
            raise CollapsebenchError(
                f"Cannot disable {name!r}: no collapsebench plugin of that name is installed "
                f"({', '.join(sorted(installed)) or 'none'}). `collapsebench plugins` lists them by name."
            )
        manager.set_blocked(name)
    plugins = [spec for spec in plugins if not spec.startswith(DISABLE_PREFIX) and spec not in disabled]
    if entry_points:
        autoload = os.environ.get(AUTOLOAD_ENV, "").strip() in ("", "0")
        for entry_point in installed.values():
            if entry_point.name in disabled:
                continue
            if autoload or _distribution_name(entry_point) == BUILTIN_DISTRIBUTION or entry_point.name in plugins:
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


def trace_hook_calls(manager: pluggy.PluginManager, write=None) -> None:
    """Print each hook call, the plugin it goes to and how long it took, through pluggy's monitoring."""
    write = write or (lambda line: print(line, file=sys.stderr, flush=True))
    started: list[float] = []

    def before(hook_name, hook_impls, kwargs):
        started.append(time.perf_counter())
        plugins = ", ".join(impl.plugin_name for impl in hook_impls) or "no plugin"
        write(f"collapsebench trace: {hook_name}({', '.join(kwargs)}) -> {plugins}")

    def after(outcome, hook_name, hook_impls, kwargs):
        seconds = time.perf_counter() - started.pop()
        if outcome.exception is not None:
            what = f"raised {type(outcome.exception).__name__}: {outcome.exception}"
        else:
            what = f"returned {_describe(outcome.get_result())}"
        write(f"collapsebench trace: {hook_name} {what} ({seconds * 1000:.1f} ms)")

    manager.add_hookcall_monitoring(before, after)


def _describe(results: list) -> str:
    # pluggy hands back the list of non-None results; record lists are summarised by name.
    if not results:
        return "nothing"
    value = results[0] if len(results) == 1 else results
    if isinstance(value, (list, tuple)):
        names = [getattr(item, "name", None) for item in value]
        if value and all(isinstance(n, str) for n in names):
            return f"{len(value)}: {', '.join(names)}"
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _distribution_name(entry_point: importlib.metadata.EntryPoint) -> str | None:
    return entry_point.dist.name if entry_point.dist else None


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
