"""Text and JSON listings of what the loaded plugins provide."""

from __future__ import annotations

import fnmatch
import json

from tabulate import tabulate

from collapsebench.registry import PLURALS, Registry

#: Shapes at which --details counts an architecture's parameters: MNIST and CIFAR-100 inputs.
PARAMETER_COUNT_SHAPES = (((1, 28, 28), 10), ((3, 32, 32), 100))


def parameter_counts(record) -> dict[str, int | str]:
    import torch  # noqa: F401  (only --details pays for torch)

    counts = {}
    for shape, classes in PARAMETER_COUNT_SHAPES:
        key = f"{'x'.join(map(str, shape))}/{classes}"
        try:
            model = record.factory(shape, classes, False)
            counts[key] = sum(p.numel() for p in model.parameters())
        except Exception as exc:  # a listing must not die because one model rejects a shape
            counts[key] = f"error: {exc}"
    return counts


def _entry_dict(kind: str, entry, details: bool) -> dict:
    record = entry.record
    data = {"name": record.name, "description": record.description, "plugin": entry.plugin}
    if kind == "stream":
        data["scenarios"] = list(record.scenarios)
        data["default_scenario"] = record.default_scenario
    if details:
        data["options"] = [_option_dict(o) for o in record.options]
        if kind == "architecture":
            data["parameters"] = parameter_counts(record)
    return data


def _option_dict(option) -> dict:
    data = {"name": option.name, "type": _type_name(option), "default": option.default, "help": option.help}
    if option.choices:
        data["choices"] = list(option.choices)
    for bound in ("minimum", "maximum"):  # inclusive, as Option checks them
        if getattr(option, bound) is not None:
            data[bound] = getattr(option, bound)
    return data


def _type_name(option) -> str:
    kind = option.type or (type(option.default) if option.default is not None else None)
    return kind.__name__ if kind is not None else "any"


def option_line(option: dict, bounds: str) -> str:
    """``lr: float, default 0.1, >= 0: help``: one option of the --details table."""
    parts = [option["type"], f"default {option['default']!r}"]
    if bounds:
        parts.append(bounds)
    if option.get("choices"):
        parts.append("one of " + "|".join(map(str, option["choices"])))
    return f"{option['name']}: {', '.join(parts)}: {option['help']}"


def _track_dict(track, details: bool) -> dict:
    data = {"name": track.name, "description": track.description, "plugin": str(track.path.parent),
            "seeds": list(track.seeds), "expected_minutes_per_seed": track.expected_minutes}
    if details:
        data["protocol"] = dict(track.config)
    return data


#: Columns of free text, wrapped so that a table fits the terminal; the others keep their width.
WRAPPED = ("description", "options", "protocol")


def _fit(rows: list[list], headers: list[str], width: int) -> list[int | None]:
    """maxcolwidths for tabulate: the width left by the other columns, shared by the text columns."""
    def longest(column: int) -> int:
        cells = [str(row[column]) for row in rows] + [headers[column]]
        return max(len(line) for cell in cells for line in cell.splitlines() or [""])

    wrapped = [i for i, h in enumerate(headers) if h in WRAPPED]
    fixed = sum(longest(i) for i in range(len(headers)) if i not in wrapped) + 2 * (len(headers) - 1)
    share = max(20, (width - fixed) // max(1, len(wrapped)))
    return [share if i in wrapped and longest(i) > share else None for i in range(len(headers))]


def describe(manager, registry: Registry, plurals: list[str], pattern: str = "*", details: bool = False,
             as_json: bool = False, width: int | None = None) -> str:
    """The listing as text (tables wrapped to ``width``, default the terminal's) or JSON."""
    import shutil

    width = width or shutil.get_terminal_size((100, 24)).columns
    listing = {}
    for plural in plurals:
        if plural == "tracks":
            from collapsebench.tracks import load_tracks

            tracks = load_tracks(manager)
            listing[plural] = [_track_dict(tracks[n], details) for n in sorted(tracks) if fnmatch.fnmatchcase(n, pattern)]
        else:
            kind = PLURALS[plural]
            listing[plural] = [_entry_dict(kind, registry.entry(kind, n), details) for n in registry.names(kind, pattern)]
    if as_json:
        return json.dumps(listing, indent=2, default=str)
    blocks = []
    for plural, items in listing.items():
        rows = []
        for item in items:
            name = item["name"]
            if "default_scenario" in item:
                name += f" [{'|'.join(item['scenarios'])}]"
            row = [name, item["description"], item["plugin"]]
            if plural == "tracks":
                row = [name, item["description"], len(item["seeds"]), item["expected_minutes_per_seed"]]
                if details:
                    row.append("\n".join(f"{k} = {v!r}" for k, v in item["protocol"].items()))
                rows.append(row)
                continue
            if details:
                bounds = {o.name: o.describe_bounds() for o in registry.get(PLURALS[plural], item["name"]).options}
                row.append("\n".join(option_line(o, bounds[o["name"]]) for o in item["options"]) or "-")
                if "parameters" in item:
                    row.append("\n".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                                         for k, v in item["parameters"].items()))
            rows.append(row)
        headers = ["name", "description", "plugin"] + (["options"] if details else [])
        if plural == "tracks":
            headers = ["name", "description", "seeds", "minutes/seed (2-core CPU)"] + (["protocol"] if details else [])
        if details and plural == "architectures":
            headers.append("parameters")
        body = tabulate(rows, headers=headers, maxcolwidths=_fit(rows, headers, width)) if rows else \
            f"(no {plural} match {pattern!r})"
        blocks.append(f"{plural}\n{body}")
    return "\n\n".join(blocks)
