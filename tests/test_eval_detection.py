import math

import pytest

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.evaluation.detection import coco_metrics


def _img(boxes, score=None):
    return ImageLabels("a.png", 200, 200, [Annotation.from_bbox(c, b, score=score) for c, b in boxes])


GT = [("truck", (10, 10, 42, 16)), ("truck", (60, 60, 92, 66)), ("boat", (100, 100, 140, 112))]


def test_perfect_predictions_give_ap_one():
    m = coco_metrics([_img(GT)], [_img(GT, score=0.9)])
    assert m["overall"]["AP50"] == pytest.approx(1.0) and m["truck"]["AP"] == pytest.approx(1.0)
    assert m["boat"]["AR"] == pytest.approx(1.0)
    assert math.isnan(m["railcar"]["AP50"]) and m["railcar"]["n_gt"] == 0


def test_a_miss_and_a_false_positive_give_known_values():
    hit = Annotation.from_bbox("truck", (10, 10, 42, 16), score=0.9)
    false = Annotation.from_bbox("truck", (150, 150, 182, 156), score=0.8)
    boat = Annotation.from_bbox("boat", (100, 100, 140, 112), score=0.9)
    m = coco_metrics([_img(GT)], [ImageLabels("a.png", 200, 200, [hit, false, boat])])
    # truck: the top-scored detection is right (precision 1 up to recall 0.5), then nothing more is found:
    # 101-point interpolated AP = 51/101
    assert m["truck"]["AR"] == pytest.approx(0.5)
    assert m["truck"]["AP50"] == pytest.approx(51 / 101)
    # the false positive ranked above the hit would halve the precision at recall 0.5
    swapped = [Annotation.from_bbox("truck", (10, 10, 42, 16), score=0.7), false, boat]
    m2 = coco_metrics([_img(GT)], [ImageLabels("a.png", 200, 200, swapped)])
    assert m2["truck"]["AP50"] == pytest.approx(0.5 * 51 / 101)
    assert m["boat"]["AP50"] == pytest.approx(1.0)


def test_no_predictions_give_zero():
    m = coco_metrics([_img(GT)], [_img([])])
    assert m["overall"]["AP50"] == 0.0
