"""Checks a run makes before torch and Avalanche load (seconds of imports, even deferred).

Bad option values, unknown plugins and refused track flags already fail while the configs are
built; the data a stream reads is checked here, through its record's ``check_data``, so that a
missing data set is reported at once rather than after the imports.
"""

from __future__ import annotations

from pathlib import Path

from collapsebench.errors import CollapsebenchError


def check_data(config, registry) -> None:
    """Raise the stream's own error if the data root lacks what the stream will read."""
    from collapsebench.config import resolve_component_options
    from collapsebench.records import StreamContext

    entry = registry.entry("stream", config.stream)
    options = resolve_component_options(config, registry)["stream"][config.stream]
    context = StreamContext(seed=config.seed, scenario=config.scenario or entry.record.default_scenario,
                            data_root=Path(config.data_root).expanduser(), download=config.download)

    def check_stream(name: str, other_context: StreamContext, other_options) -> None:
        """Another stream's options and data (a wrapper's base), as the run would build it."""
        other = registry.entry("stream", name)
        if not isinstance(other_options, dict):
            raise CollapsebenchError(f"The options of stream {name!r} must be a table, got {other_options!r}.")
        _check(other, other.record.resolve_options(other_options), other_context)

    context.check_stream = check_stream
    _check(entry, options, context)


def _check(entry, options, context) -> None:
    check = getattr(entry.record, "check_data", None)
    if check is None:
        return
    try:
        check(context, **options)
    except CollapsebenchError:
        raise
    except Exception as exc:
        raise CollapsebenchError(
            f"The stream {entry.record.name!r} (from collapsebench plugin {entry.plugin!r}) failed to check its data: "
            f"{type(exc).__name__}: {exc}"
        ) from None
