"""Mixing real and synthetic YOLO datasets: class remapping, tile-grouped splits, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from freightwatch.errors import InputFileError
from freightwatch.taxonomy import CLASSES
from freightwatch.training.mixing import (
    MixPart,
    label_path,
    list_images,
    mix_yolo,
    one_per_group,
    roboflow_group,
    split_groups,
)


def _source(root: Path, names: list[str], labels: dict[str, str]) -> list[Path]:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n in names:
        cv2.imwrite(str(root / "images" / n), np.zeros((8, 8, 3), np.uint8))
        if n in labels:
            (root / "labels" / Path(n).with_suffix(".txt").name).write_text(labels[n])
    return list_images(root / "images")


def test_roboflow_copies_share_a_group_and_stay_on_one_side_of_the_split(tmp_path):
    names = [f"GE_{i}_jpg.rf.{h}.jpg" for i in range(40) for h in ("a1b2", "c3d4", "e5f6")]
    ims = _source(tmp_path, names, {})
    assert roboflow_group(ims[0]) == "GE_0"
    train, dev = split_groups(ims, 0.25)
    assert {roboflow_group(p) for p in train}.isdisjoint({roboflow_group(p) for p in dev})
    assert 0 < len(dev) < len(ims) and len(train) + len(dev) == len(ims)
    assert split_groups(ims, 0.25) == (train, dev)  # deterministic
    assert len(one_per_group(ims)) == 40


def test_mix_remaps_classes_drops_unmapped_and_writes_freightwatch_names(tmp_path):
    ships = _source(tmp_path / "ships", ["a.jpg", "b.jpg"], {"a.jpg": "0 0.5 0.5 0.2 0.1\n1 0.1 0.1 0.05 0.05\n"})
    syn = _source(tmp_path / "syn", ["c.png"], {"c.png": "0 0.5 0.5 0.1 0.1\n2 0.2 0.2 0.1 0.1\n"})
    data_yaml, summary = mix_yolo(tmp_path / "mix", [
        MixPart("ships", ships, "train", {0: "boat"}),
        MixPart("syn", syn, "val", {0: "truck", 1: "railcar", 2: "boat"}),
    ])
    spec = yaml.safe_load(data_yaml.read_text())
    assert list(spec["names"].values()) == list(CLASSES)
    out = tmp_path / "mix"
    assert (out / "labels/train/ships__a.txt").read_text().split() == ["2", "0.5", "0.5", "0.2", "0.1"]
    assert (out / "labels/train/ships__b.txt").read_text() == ""  # unlabeled image: kept as background
    assert (out / "labels/val/syn__c.txt").read_text().splitlines() == ["0 0.5 0.5 0.1 0.1", "2 0.2 0.2 0.1 0.1"]
    assert (out / "images/train/ships__a.jpg").resolve() == ships[0].resolve()
    assert summary["ships"] == {"images": 2, "boxes": 1, "dropped": 1}
    assert label_path(out / "images/val/syn__c.png") == out / "labels/val/syn__c.txt"


@pytest.mark.parametrize("line,why", [("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
                                      ("boat 0.5 0.5 0.2 0.1", "not numbers"),
                                      ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4", "expected 'class cx cy w h'")])
def test_malformed_label_names_file_and_line(tmp_path, line, why):
    ims = _source(tmp_path / "s", ["x.jpg"], {"x.jpg": f"0 0.5 0.5 0.1 0.1\n{line}\n"})
    with pytest.raises(InputFileError, match=rf"x\.txt.*line 2: {why}"):
        mix_yolo(tmp_path / "mix", [MixPart("s", ims, "train", {0: "boat"})])


def test_unknown_target_class_and_missing_folder_are_errors(tmp_path):
    ims = _source(tmp_path / "s", ["x.jpg"], {})
    with pytest.raises(KeyError, match="unknown class 'ship'"):
        mix_yolo(tmp_path / "mix", [MixPart("s", ims, "train", {0: "ship"})])
    with pytest.raises(InputFileError, match="does not exist"):
        list_images(tmp_path / "nope")


SHIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ships-google-earth"


@pytest.mark.skipif(not (SHIPS / "train" / "images").is_dir(), reason="../shared ships data not present")
def test_real_ship_recipe_split_has_no_source_tile_on_both_sides():
    """The real-transfer recipe's dev split must share no source tile with training, nor with `valid`."""
    train, dev = split_groups(list_images(SHIPS / "train" / "images"), 0.1)
    valid = list_images(SHIPS / "valid" / "images")
    g_train, g_dev, g_valid = ({roboflow_group(p) for p in x} for x in (train, dev, valid))
    assert g_train.isdisjoint(g_dev) and g_train.isdisjoint(g_valid) and g_dev.isdisjoint(g_valid)
    assert 0.05 < len(g_dev) / (len(g_train) + len(g_dev)) < 0.15
