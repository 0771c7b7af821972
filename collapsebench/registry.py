"""The registry: name -> record, collected from the provider hooks of every loaded plugin.

Each hook implementation is called on its own so that every record, every conflict and every
failure is attributed to the plugin that caused it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from collapsebench.errors import CollapsebenchError, unknown_name_error
from collapsebench.manager import PluginManager
from collapsebench.records import Architecture, Evaluator, Logger, Strategy, Stream

#: kind -> (hook name, record type)
KINDS = {
    "architecture": ("collapsebench_architectures", Architecture),
    "strategy": ("collapsebench_strategies", Strategy),
    "stream": ("collapsebench_streams", Stream),
    "evaluator": ("collapsebench_evaluators", Evaluator),
    "logger": ("collapsebench_loggers", Logger),
}
PLURALS = {
    "architectures": "architecture",
    "strategies": "strategy",
    "streams": "stream",
    "evaluators": "evaluator",
    "loggers": "logger",
}


@dataclass(frozen=True)
class Entry:
    record: Architecture | Strategy | Stream | Evaluator | Logger
    plugin: str


class Registry:
    """Every named architecture, strategy, stream and evaluator the loaded plugins provide."""

    def __init__(self, manager: PluginManager):
        self.manager = manager
        self._entries: dict[str, dict[str, Entry]] = {kind: self._collect(kind) for kind in KINDS}
        from collapsebench import declarations

        declarations.use(e.record for e in self.entries("evaluator"))  # what reports and boards read

    def _collect(self, kind: str) -> dict[str, Entry]:
        hook_name, record_type = KINDS[kind]
        entries: dict[str, Entry] = {}
        for plugin, records in self.manager.call_each(hook_name):
            if records is None:
                continue  # an implementation that provides nothing of this kind
            if not isinstance(records, (list, tuple)):
                what = f"a single {record_type.__name__}" if isinstance(records, record_type) else type(records).__name__
                raise CollapsebenchError(
                    f"collapsebench plugin {plugin!r} returned {what} from {hook_name}(); expected a list of "
                    f"collapsebench.{record_type.__name__} records (return [record] for one)."
                )
            for record in records:
                if not isinstance(record, record_type):
                    raise CollapsebenchError(
                        f"collapsebench plugin {plugin!r} returned {type(record).__name__} from "
                        f"{hook_name}(); expected collapsebench.{record_type.__name__} records."
                    )
                if record.name in entries:
                    raise CollapsebenchError(
                        f"Two collapsebench plugins provide the {kind} {record.name!r}: "
                        f"{entries[record.name].plugin!r} and {plugin!r}. Uninstall or rename one of them."
                    )
                entries[record.name] = Entry(record, plugin)
        return entries

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of one kind, filtered by a shell-style wildcard (``"split-*"``)."""
        return sorted(n for n in self._entries[kind] if fnmatch.fnmatchcase(n, pattern))

    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise unknown_name_error(
                kind, name, self._entries[kind], hint=f"`collapsebench list {kind_plural(kind)}` describes them."
            ) from None

    def get(self, kind: str, name: str):
        return self.entry(kind, name).record

    def logger_outputs(self, run_dir) -> list:
        """Paths in ``run_dir`` that any loaded logger declares it writes (an earlier run's logs)."""
        from pathlib import Path

        found = {path for entry in self._entries["logger"].values() for pattern in entry.record.outputs
                 for path in Path(run_dir).glob(pattern)}
        return sorted(found)

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def provided_by(self, plugin: str) -> dict[str, list[str]]:
        """What one plugin provides: kind -> names."""
        return {
            kind: sorted(n for n, e in entries.items() if e.plugin == plugin)
            for kind, entries in self._entries.items()
            if any(e.plugin == plugin for e in entries.values())
        }


def kind_plural(kind: str) -> str:
    return {v: k for k, v in PLURALS.items()}[kind]
