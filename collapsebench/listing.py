"""Text and JSON listings of what the loaded plugins provide."""

from __future__ import annotations

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
        data["options"] = [
            {"name": o.name, "default": o.default, "help": o.help, **({"choices": list(o.choices)} if o.choices else {})}
            for o in record.options
        ]
        if kind == "architecture":
            data["parameters"] = parameter_counts(record)
    return data


def describe(registry: Registry, plurals: list[str], pattern: str = "*", details: bool = False, as_json: bool = False) -> str:
    listing = {
        plural: [_entry_dict(PLURALS[plural], registry.entry(PLURALS[plural], n), details)
                 for n in registry.names(PLURALS[plural], pattern)]
        for plural in plurals
    }
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
            if details:
                row.append("\n".join(f"{o['name']}={o['default']!r}: {o['help']}" for o in item["options"]) or "-")
                if "parameters" in item:
                    row.append("\n".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                                         for k, v in item["parameters"].items()))
            rows.append(row)
        headers = ["name", "description", "plugin"] + (["options"] if details else [])
        if details and plural == "architectures":
            headers.append("parameters")
        body = tabulate(rows, headers=headers) if rows else f"(no {plural} match {pattern!r})"
        blocks.append(f"{plural}\n{body}")
    return "\n\n".join(blocks)
