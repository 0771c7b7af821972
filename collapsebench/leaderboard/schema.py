"""The JSON Schema of a submission file (draft 2020-12), checked with the ``jsonschema`` package.

The schema fixes the shape; :mod:`collapsebench.leaderboard.validate` checks what a schema cannot
(hashes, recomputed summaries, the protocol against the track file, finiteness).
"""

from __future__ import annotations

from collapsebench.leaderboard import FORMAT, FORMAT_VERSION

_NAME = {"type": "string", "pattern": r"^[a-z][a-z0-9_\-]*$"}
_HASH = {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"}
_HEX = {"type": "string", "pattern": r"^[0-9a-f]{64}$"}
_TEXT = {"type": ["string", "null"], "maxLength": 2000}
_ACCURACY = {"type": "number", "minimum": 0, "maximum": 1}
_MAYBE_ACCURACY = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_RATIO = {"type": ["number", "null"], "minimum": 0}

_PLUGIN = {
    "type": "object",
    "required": ["name", "source", "location", "distribution", "version"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "source": {"enum": ["entry point", "module", "file"]},
        "location": {"type": "string"},
        "distribution": {"type": ["string", "null"]},
        "version": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}

_SOURCE = {
    "type": "object",
    "required": ["component", "plugin", "distribution", "version", "files", "sha256"],
    "properties": {
        "component": _NAME,
        "plugin": {"type": "string", "minLength": 1},
        "distribution": {"type": ["string", "null"]},
        "version": {"type": ["string", "null"]},
        "files": {"type": "object", "minProperties": 1, "additionalProperties": _HEX},
        "sha256": _HASH,
    },
    "additionalProperties": False,
}

_RUN = {
    "type": "object",
    "required": [
        "seed", "status", "results_sha256", "config", "resolved_options", "stream", "probe", "taps",
        "summary", "collapse", "environment",
    ],
    "properties": {
        "seed": {"type": "integer", "minimum": 0},
        "status": {"const": "complete"},
        "results_sha256": _HEX,
        "config": {
            "type": "object",
            "required": ["track", "stream", "model", "strategy", "evaluators", "seed", "device"],
            "properties": {
                "track": _NAME,
                "stream": _NAME,
                "model": _NAME,
                "strategy": {"type": "string", "minLength": 1},
                "evaluators": {"type": "array", "items": _NAME},
                "seed": {"type": "integer", "minimum": 0},
                "device": {"type": "string"},
            },
        },
        "resolved_options": {
            "type": "object",
            "required": ["stream", "model", "strategy", "evaluator"],
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "object"}},
        },
        "stream": {
            "type": "object",
            "required": ["description", "scenario", "n_experiences", "n_classes", "fingerprint"],
            "properties": {
                "description": {"type": "string"},
                "scenario": {"enum": ["class", "task", "domain"]},
                "n_experiences": {"type": "integer", "minimum": 1},
                "n_classes": {"type": "integer", "minimum": 1},
                "fingerprint": {"type": "string", "minLength": 1},
            },
        },
        "probe": {
            "type": "object",
            "required": ["size", "sha256"],
            "properties": {"size": {"type": "integer", "minimum": 0}, "sha256": _HEX},
        },
        "taps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "width"],
                "properties": {"name": {"type": "string"}, "width": {"type": "integer", "minimum": 1}},
            },
        },
        # null: a cell the run's evaluation protocol did not measure (docs/protocols.md)
        "accuracy_matrix": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "array", "minItems": 1, "items": _MAYBE_ACCURACY},
        },
        # instead of accuracy_matrix under a sparse protocol: row i holds the values of the
        # columns the protocol measures after experience i (collapsebench/leaderboard/cells.py)
        "accuracy_rows": {"type": "array", "minItems": 1, "items": {"type": "array", "items": _ACCURACY}},
        # absent in submissions made before protocols existed: those measured the full matrix
        "evaluation": {
            "type": "object",
            "required": ["protocol", "measured_cells"],
            "properties": {"protocol": {"type": "string", "minLength": 1},
                           "measured_cells": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
        },
        "online_accuracy": {"type": "array", "minItems": 1, "items": _ACCURACY},
        "summary_unavailable": {"type": "object", "additionalProperties": {"type": "string"}},
        "summary_sources": {"type": "object", "additionalProperties": {"type": "string"}},
        # Which accuracy summaries a run must report depends on what its protocol measured;
        # validate.py recomputes them and refuses any computed from unmeasured cells.
        "summary": {
            "type": "object",
            "properties": {
                "average_accuracy": _ACCURACY,
                "forgetting": {"type": "number", "minimum": -1, "maximum": 1},
                "bwt": {"type": "number", "minimum": -1, "maximum": 1},
                "new_task_accuracy": {"type": "array", "items": _ACCURACY},
                # null where the first tenth of the tasks averages 0
                "plasticity_retention": _RATIO,
                "online_plasticity_retention": _RATIO,
            },
            # An evaluator's summaries are not listed: validate.py checks them against its
            # declarations (collapsebench.records.Summary: bounds, the value recomputed from the series).
        },
        # "<metric>/<kind>/<layer>" -> the value after each experience (null: not measured then)
        "collapse": {
            "type": "object",
            "propertyNames": {"pattern": r"^[^/]+/[^/]+/.+$"},
            "additionalProperties": {"type": "array", "items": {"type": ["number", "null"]}},
        },
        "environment": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "timing": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "additionalProperties": False,
}

SUBMISSION_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "collapsebench leaderboard submission",
    "type": "object",
    "required": [
        "format", "format_version", "name", "author", "url", "submitted_at", "track", "strategy", "data",
        "plugins", "environment", "runs", "content_hash",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"const": FORMAT_VERSION},
        "name": {"type": "string", "minLength": 1, "maxLength": 80},
        "author": _TEXT,
        "url": {"type": ["string", "null"], "pattern": r"^https?://\S+\Z", "maxLength": 2000},
        "submitted_at": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "track": {
            "type": "object",
            "required": ["name", "description", "seeds", "protocol"],
            "properties": {
                "name": _NAME,
                "description": {"type": "string"},
                "seeds": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "integer", "minimum": 0}},
                "protocol": {"type": "object"},
                "data": _TEXT,
                # the track's declaration of what its board ranks on (absent: the default pair)
                # its names are checked against the declared summaries (validate.py), which plugins extend
                "rank": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "strategy": {
            "type": "object",
            "required": ["spec", "components", "options", "sources"],
            "properties": {
                "spec": {"type": "string", "minLength": 1},
                "components": {"type": "array", "minItems": 1, "items": _NAME},
                "options": {"type": "object", "additionalProperties": {"type": "object"}},
                "sources": {"type": "array", "minItems": 1, "items": _SOURCE},
            },
            "additionalProperties": False,
        },
        "data": {
            "type": "object",
            "required": ["stream", "fingerprint", "description", "sample"],
            "properties": {
                "stream": _NAME,
                "fingerprint": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "sample": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "plugins": {"type": "array", "items": _PLUGIN},
        "environment": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "runs": {"type": "array", "minItems": 1, "items": _RUN},
        "content_hash": _HASH,
    },
    "additionalProperties": False,
}


def schema_errors(submission) -> list[str]:
    """Every schema violation, as ``field: message``, in a stable order."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SUBMISSION_SCHEMA)
    errors = sorted(validator.iter_errors(submission), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{field_name(error.absolute_path)}: {_short(error)}" for error in errors]


def field_name(path) -> str:
    """``runs[0].accuracy_matrix[1][2]`` from a JSON path's parts."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the submission)"


def _short(error) -> str:
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."
