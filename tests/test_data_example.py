"""examples/multilabel_images: JPEGs and list files, `caffe train` through MultilabelImageDataLayer, test mAP."""
import os
import pathlib
import re
import sys

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "multilabel_images"))
import make_images  # noqa: E402
import run_example  # noqa: E402


def test_images_and_lists(tmp_path):
    counts = make_images.make_images(str(tmp_path), n_train=30, n_test=10)
    assert counts == {"train": 30, "test": 10}
    names = (tmp_path / "class_names.txt").read_text().split()
    assert names == make_images.CLASS_NAMES
    lines = [line for line in (tmp_path / "train.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 30
    for line in lines:
        path, *labels = line.split()
        assert 1 <= len(labels) <= 3 and set(labels) <= set(names)
        img = cv2.imread(str(tmp_path / path), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (32, 32)
        # each digit is a bright 8x8 scan on a black canvas: more digits, more ink
        assert (img > 64).sum() >= 4 * len(labels)


def test_trains_through_caffe(tmp_path, capsys):
    out = str(tmp_path / "ex")
    assert run_example.main(["--out", out, "--n-train", "3200", "--n-test", "200", "--max-iter", "150"]) == 0
    printed = capsys.readouterr().out
    # seeded (solver random_seed, layer seed): the loss leaves the log(10) = 2.30 plateau on held-out images
    losses = re.search(r"test loss ([\d.]+), ([\d.]+)", printed)
    assert losses, printed
    tests = [float(v) for v in losses.groups()]
    assert tests[0] == pytest.approx(np.log(10), abs=0.05) and tests[1] < tests[0] - 0.05
    found = re.search(r"test mAP over the 10 classes: ([\d.]+)", printed)
    assert found, printed
    m_ap = float(found.group(1))
    assert m_ap > 0.3          # chance is about the share of positives, 0.2 (measured: 0.40)
    assert "Optimization Done" in pathlib.Path(out, "train.log").read_text()
