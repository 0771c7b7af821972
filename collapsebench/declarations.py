"""What the loaded evaluators declare they produce, for the code that reads their results.

The report, TensorBoard's layout, leaderboard validation and ranking never name an evaluator's
metric or summary: they ask the catalog here. The accuracy summaries are the host's own (every
run measures accuracy) and are declared in :data:`HOST_SUMMARIES`; everything else comes from
the ``metrics``, ``summaries`` and ``figures`` of each loaded :class:`~collapsebench.records.Evaluator`.

The catalog holds the installed plugins' declarations (read on first use: entry points only,
which is cheap and imports no torch) and those of every registry built in the process (a
registry calls :func:`use`, so ``--plugin`` modules count).
Pure Python: the leaderboard reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collapsebench.records import Evaluator, FigureSpec, Metric, Summary

#: Summaries the host computes from the accuracy matrix (collapsebench.metrics.accuracy);
#: leaderboard validation recomputes them itself (collapsebench/leaderboard/validate.py).
HOST_SUMMARIES: tuple[Summary, ...] = (
    Summary("average_accuracy", "mean test accuracy over all experiences after the last one",
            higher_is_better=True, bounds=(0.0, 1.0), label="accuracy"),
    Summary("forgetting", "mean drop from each experience's best accuracy to its final one",
            higher_is_better=False, bounds=(-1.0, 1.0)),
    Summary("bwt", "backward transfer: mean final minus just-learned accuracy", bounds=(-1.0, 1.0)),
    Summary("new_task_accuracy", "accuracy on each task right after training on it (per task)",
            higher_is_better=True, bounds=(0.0, 1.0), label="new-task accuracy"),
    Summary("plasticity_retention", "late over early new-task accuracy", higher_is_better=True, nullable=True),
    Summary("online_plasticity_retention", "late over early online training accuracy",
            higher_is_better=True, nullable=True),
)


@dataclass
class Catalog:
    """Every declared metric, summary and figure, by name; the first declaration of a name wins."""

    summaries: dict[str, Summary] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    figures: dict[str, FigureSpec] = field(default_factory=dict)
    #: summary name -> the evaluator that declares it (absent: the host's)
    owners: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, evaluators: Iterable[Evaluator]) -> Catalog:
        catalog = cls()
        for summary in HOST_SUMMARIES:
            catalog.summaries[summary.name] = summary
        for evaluator in evaluators:
            for summary in evaluator.summaries:
                if summary.name not in catalog.summaries:
                    catalog.summaries[summary.name] = summary
                    catalog.owners[summary.name] = evaluator.name
            for metric in evaluator.metrics:
                catalog.metrics.setdefault(metric.name, metric)
            for figure in evaluator.figures:
                catalog.figures.setdefault(figure.name, figure)
        return catalog

    def ranked(self) -> dict[str, Summary]:
        """rank name -> summary, for every summary with a direction."""
        return {s.ranked_as: s for s in self.summaries.values() if s.higher_is_better is not None}

    def header(self, name: str) -> str:
        """A ranked metric's column header."""
        summary = self.ranked().get(name) or self.summaries.get(name)
        return summary.header if summary else name

    def bounds(self, name: str) -> tuple[float, float] | None:
        summary = self.summaries.get(name) or self.ranked().get(name)
        return summary.bounds if summary else None


#: Every evaluator a registry in this process loaded, by name (the first record of a name wins).
_published: dict[str, Evaluator] = {}
_catalog: Catalog | None = None
_installed_read = False


def use(evaluators: Iterable[Evaluator]) -> None:
    """Add the declarations of ``evaluators`` (a registry's) to the catalog.

    Added, never replaced: a registry built with a plugin switched off must not make a later
    board in the same process forget how to rank what that plugin declared.
    """
    global _catalog
    for evaluator in evaluators:
        _published.setdefault(evaluator.name, evaluator)
    _catalog = None


def catalog() -> Catalog:
    """Declarations of the installed plugins and of every registry built so far."""
    global _catalog, _installed_read
    if not _installed_read:
        _installed_read = True
        from collapsebench.errors import CollapsebenchError
        from collapsebench.manager import build_manager
        from collapsebench.registry import Registry

        try:
            Registry(build_manager())  # a registry publishes its evaluators' declarations
        except CollapsebenchError:
            # Reading a board must not fail on one broken plugin: take what loads.
            use(_evaluators_that_load())
    if _catalog is None:
        _catalog = Catalog.of(_published.values())
    return _catalog


def reset() -> None:
    """Forget every declaration (tests that load a plugin of their own clean up with it)."""
    global _catalog, _installed_read
    _published.clear()
    _catalog, _installed_read = None, False


def _evaluators_that_load() -> list[Evaluator]:
    """The evaluators of every installed entry point that loads and declares them; the rest skipped."""
    import importlib.metadata

    from collapsebench.manager import ENTRY_POINT_GROUP

    found = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            hook = getattr(entry_point.load(), "collapsebench_evaluators", None)
            records = hook() if callable(hook) else None
        except Exception:  # a broken plugin: its declarations are unknown, the others still count
            continue
        found += [r for r in records or () if isinstance(r, Evaluator)]
    return found
