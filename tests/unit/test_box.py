"""Box geometry: the one set of rectangle helpers the planner, designer, analyzer and VLM reader share."""

from __future__ import annotations

import pytest

from kernel.models import Box

A = Box(x=0, y=0, w=100, h=100)
B = Box(x=50, y=50, w=100, h=100)


def test_overlap_measures() -> None:
    assert A.intersection(B) == 2500
    assert A.iou(B) == pytest.approx(2500 / 17500)
    assert A.overlap(Box(x=10, y=10, w=20, h=20)) == 1.0  # all of the smaller one
    assert A.iou(Box(x=0, y=0, w=0, h=0)) == 0.0 and A.overlap(Box(x=5, y=5, w=0, h=3)) == 0.0


def test_expand_clip_union_contains() -> None:
    assert A.expand(10) == Box(x=-10, y=-10, w=120, h=120) and A.expand(10).expand(-10) == A
    assert B.clip(A) == Box(x=50, y=50, w=50, h=50)
    assert Box(x=200, y=0, w=10, h=10).clip(A).area == 0
    assert A.union(B) == Box(x=0, y=0, w=150, h=150) == Box.around([B, A])
    assert A.contains(Box(x=10, y=10, w=90, h=90)) and not A.contains(B)
    with pytest.raises(ValueError):
        Box.around([])


def test_avoid_keeps_the_largest_side_clear_of_the_obstacle() -> None:
    canvas = Box(x=0, y=0, w=1000, h=600)
    product = Box(x=600, y=100, w=200, h=400)
    assert canvas.avoid(Box(x=2000, y=0, w=5, h=5)) == canvas  # no contact: unchanged
    left = canvas.avoid(product, gap=20)
    assert left == Box(x=0, y=0, w=580, h=600) and left.intersection(product) == 0
    text = Box(x=850, y=50, w=100, h=50)
    assert canvas.avoid(product, keep=text) == Box(x=800, y=0, w=200, h=600)
    assert Box(x=600, y=100, w=10, h=10).avoid(product) is None  # wholly inside: nothing left
