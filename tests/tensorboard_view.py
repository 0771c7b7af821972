"""What TensorBoard shows for a log directory, computed by TensorBoard's own backend.

``runs(logdir)`` are the run names of its run selector (what ``tensorboard --logdir LOGDIR``
lists); ``chart_lines(logdir)`` is, for every chart of the *Custom Scalars* tab, the names of its
lines. Both go through the same code the server runs: the event multiplexer, and the
custom-scalars plugin's ``layout`` and ``scalars`` handlers. The one thing copied from the
browser side is how a line is named, ``"<tag> (<run>)"`` (``generateDataSeriesName`` in
TensorBoard's tf-custom-scalar-helpers.ts), and how a chart's tag expressions are joined into one.
"""

from __future__ import annotations

import json
from pathlib import Path


def _backend(logdir: str | Path):
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.custom_scalar.custom_scalars_plugin import CustomScalarsPlugin
    from tensorboard.plugins.scalar.scalars_plugin import ScalarsPlugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    plugins: dict = {}
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, plugin_name_to_instance=plugins,
                                    data_provider=MultiplexerDataProvider(multiplexer, str(logdir)))
    plugins["scalars"] = ScalarsPlugin(context)
    return multiplexer, CustomScalarsPlugin(context)


def runs(logdir: str | Path) -> list[str]:
    multiplexer, _ = _backend(logdir)
    return sorted(multiplexer.Runs())


def chart_lines(logdir: str | Path) -> dict[tuple[str, str], list[str]]:
    """(category, chart title) -> the chart's line names over every run, as the browser names them."""
    from tensorboard import context

    multiplexer, plugin = _backend(logdir)
    request = context.RequestContext()
    layout = plugin.layout_impl(request, "")
    layout = json.loads(layout) if isinstance(layout, str) else layout
    lines = {}
    for category in layout.get("category", []):
        for chart in category["chart"]:
            tags = chart["multiline"]["tag"]
            # As the chart card does: one expression, or each in parentheses joined by '|'.
            expression = tags[0] if len(tags) == 1 else "|".join(f"({tag})" for tag in tags)
            names = []
            for run in sorted(multiplexer.Runs()):
                found = plugin.scalars_impl(request, run, expression, "")
                assert found["regex_valid"], expression
                names += [f"{tag} ({run})" for tag in sorted(found["tag_to_events"])]
            lines[(category["title"], chart["title"])] = names
    return lines
