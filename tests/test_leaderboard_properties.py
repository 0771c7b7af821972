"""Property-based: malformed and mutated submissions thrown at the validator. None may be
accepted, and none may make it raise."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collapsebench.leaderboard import hashing
from collapsebench.leaderboard.submission import build_submission
from collapsebench.leaderboard.validate import check_submission
from leaderboard_helpers import track_record, write_runs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    submission = build_submission(write_runs(tmp_path_factory.mktemp("runs")))
    assert check_submission(submission, track_record()) == []
    return submission


def paths(value, prefix=()):
    """Every location in a JSON value, containers included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replace_at(document, path, new):
    if not path:
        return new
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return document


def delete_at(document, path):
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


def rejected(submission) -> bool:
    problems = check_submission(submission, track_record())  # must not raise, whatever it is given
    assert all(isinstance(p, str) and p for p in problems)
    return bool(problems)


@SETTINGS
@given(json_values)
def test_arbitrary_json_is_never_a_submission(value):
    assert rejected(value)


@SETTINGS
@given(st.data())
def test_any_edit_without_the_hash_is_rejected(valid, data):
    path = data.draw(st.sampled_from(paths(valid)), label="path")
    mutated = replace_at(valid, path, data.draw(json_values, label="new value"))
    if mutated != valid:
        assert rejected(mutated)


@SETTINGS
@given(st.data())
def test_any_deletion_is_rejected(valid, data):
    path = data.draw(st.sampled_from([p for p in paths(valid) if p]), label="path")
    assert rejected(delete_at(valid, path))


def _checked_numbers(submission):
    """Numbers the validator can check against something else in the file, or the track file."""
    found = []
    for i, run in enumerate(submission["runs"]):
        size = len(run["accuracy_matrix"])
        found += [("runs", i, "accuracy_matrix", size - 1, j) for j in range(size)]  # the final row
        found += [("runs", i, "accuracy_matrix", j, j) for j in range(size - 1)]  # the diagonal (bwt)
        found += [("runs", i, "summary", key) for key in ("average_accuracy", "forgetting", "bwt", "capacity_retention",
                                                         "dead_units")]
        found += [("runs", i, "config", key) for key in ("epochs", "lr", "batch_size", "momentum", "probe_size", "seed")]
        found += [("runs", i, "seed")]
    return found


@SETTINGS
@given(st.data())
def test_a_rehashed_edit_of_a_checked_number_is_rejected(valid, data):
    """Even with a freshly computed content hash, a changed result or protocol value is caught."""
    path = data.draw(st.sampled_from(_checked_numbers(valid)), label="path")
    old = valid
    for key in path:
        old = old[key]
    new = data.draw(st.floats(0, 1) | st.integers(0, 10**6) | st.floats(), label="new value")
    if isinstance(new, float) and math.isfinite(new) and abs(new - old) < 1e-6 or new == old:
        return  # not a change worth the name (below the recomputation tolerance)
    mutated = replace_at(valid, path, new)
    try:
        mutated["content_hash"] = hashing.content_hash(mutated)
    except ValueError:
        pass  # NaN cannot be hashed; the finiteness check names it
    assert rejected(mutated)


@SETTINGS
@given(st.data(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_non_finite_number_anywhere_is_rejected(valid, data, bad):
    numbers = [p for p in paths(valid) if p and isinstance(_at(valid, p), (int, float)) and not isinstance(_at(valid, p), bool)]
    path = data.draw(st.sampled_from(numbers), label="path")
    problems = check_submission(replace_at(valid, path, bad), track_record())
    assert any("not a finite number" in p for p in problems)


def _at(document, path):
    for key in path:
        document = document[key]
    return document
