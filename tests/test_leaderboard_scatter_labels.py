"""The leaderboard scatter's labels: inside the frame, clear of each other and of the points,
even for a cluster of near-identical entries (the 0.2-accuracy cluster of the digits board)."""

from __future__ import annotations

import itertools

from collapsebench.leaderboard.render import LABEL_CHARACTER, LABEL_HEIGHT, _label_position, _overlap

FRAME = dict(left_edge=64.0, top_edge=16.0, bottom_edge=412.0)
RIGHT = 736.0


def _boxes(points, names):
    placed, markers = [], points
    for (x, y), name in zip(points, names):
        _label_position(x, y, len(name), placed, RIGHT, markers=markers, **FRAME)
    return placed


def test_a_dense_cluster_gets_labels_that_do_not_overlap():
    names = ["naive", "redo", "ewc", "lwf", "si", "cbp", "l2-init", "shrink-perturb", "er-l2", "agem"]
    points = [(400.0 + (k % 3) * 1.5, 300.0 + (k % 4) * 2.0) for k in range(len(names))]
    boxes = _boxes(points, names)
    for a, b in itertools.combinations(boxes, 2):
        assert _overlap(a, b) == 0, (a, b)
    for box in boxes:
        assert FRAME["left_edge"] <= box[0] and box[1] <= RIGHT
        assert FRAME["top_edge"] <= box[2] and box[3] <= FRAME["bottom_edge"]
        for x, y in points:
            assert _overlap(box, (x - 5, x + 5, y - 5, y + 5)) == 0


def test_a_lone_point_keeps_its_label_right_of_and_above_it():
    placed = []
    assert _label_position(200.0, 200.0, 5, placed, RIGHT, markers=[(200.0, 200.0)], **FRAME) == (208.0, 193.0)
    assert placed[0][1] - placed[0][0] == 5 * LABEL_CHARACTER and placed[0][3] - placed[0][2] == LABEL_HEIGHT


def test_a_point_near_the_right_edge_is_labelled_on_its_left():
    label_x, _ = _label_position(730.0, 200.0, 8, [], RIGHT, markers=[(730.0, 200.0)], **FRAME)
    assert label_x + 8 * LABEL_CHARACTER <= 730.0
