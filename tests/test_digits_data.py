"""Multi-label digits generator: labels match the placed scans, splits are disjoint, seeded."""
import os
import sys

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "multilabel_digits"))
import digits_data  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_data")
    summary = digits_data.make_dataset(str(out), n_train=300, n_test=200, seed=3, log=lambda s: None)
    splits = {}
    for name in ("train", "test"):
        with h5py.File(summary["splits"][name]["h5_file"], "r") as f:
            splits[name] = {k: f[k][()] for k in f}
    return out, summary, splits


def test_hdf5_layout_for_caffe(dataset):
    out, summary, splits = dataset
    for name, n in (("train", 300), ("test", 200)):
        with h5py.File(summary["splits"][name]["h5_file"], "r") as f:
            assert f["data"].dtype == np.float32 and f["data"].shape == (n, 1, 24, 24)
            assert f["label"].dtype == np.float32 and f["label"].shape == (n, 10)
        with open(os.path.join(str(out), name + "_list.txt")) as f:
            assert f.read().split() == [summary["splits"][name]["h5_file"]]
        assert 0.0 <= splits[name]["data"].min() and splits[name]["data"].max() <= 1.0


def test_labels_match_placed_digits(dataset):
    _, _, splits = dataset
    images, targets = digits_data.load_scans()
    for arrays in splits.values():
        for x, y, scans, pos in zip(arrays["data"], arrays["label"], arrays["scan_index"], arrays["position"],
                                    strict=True):
            placed = scans[scans >= 0]
            assert 1 <= len(placed) <= 3
            assert (scans[len(placed):] == -1).all()
            classes = targets[placed]
            assert len(set(classes)) == len(classes), "classes must be distinct"
            assert set(np.flatnonzero(y)) == set(classes)
            assert y.sum() == len(placed) and set(np.unique(y)) <= {0.0, 1.0}
            # the canvas is exactly the scans at their positions, zero elsewhere
            expected = np.zeros((24, 24), np.float32)
            boxes = pos[:len(placed)]
            for s, (r, c) in zip(placed, boxes, strict=True):
                assert (expected[r:r + 8, c:c + 8] == 0).all()
                expected[r:r + 8, c:c + 8] = images[s]
            np.testing.assert_array_equal(x[0], expected)
            for i in range(len(boxes)):
                for j in range(i):
                    (r1, c1), (r2, c2) = boxes[i], boxes[j]
                    assert abs(r1 - r2) >= 8 or abs(c1 - c2) >= 8, "boxes overlap"


def test_splits_use_disjoint_source_scans(dataset):
    _, summary, splits = dataset
    train_scans = set(splits["train"]["scan_index"].ravel()) - {-1}
    test_scans = set(splits["test"]["scan_index"].ravel()) - {-1}
    assert train_scans and test_scans and not train_scans & test_scans
    _, targets = digits_data.load_scans()
    tr, te = digits_data.split_scans(targets, 0.3, seed=3)
    assert not set(tr) & set(te) and len(tr) + len(te) == len(targets)
    assert train_scans <= set(tr) and test_scans <= set(te)
    # stratified: every class is in both pools in roughly the 70/30 proportion
    for c in range(10):
        frac = np.mean(targets[te] == c) / np.mean(targets == c)
        assert 0.9 < frac < 1.1


def test_summary_counts(dataset):
    _, summary, splits = dataset
    for name, arrays in splits.items():
        s = summary["splits"][name]
        counts = arrays["label"].sum(axis=1)
        assert s["cardinality_histogram"] == {k: int((counts == k).sum()) for k in range(4)}
        assert s["cardinality_histogram"][0] == 0
        assert all(v > 0 for k, v in s["cardinality_histogram"].items() if k > 0)
        assert s["per_class_positives"] == [int(v) for v in arrays["label"].sum(axis=0)]
    text = digits_data.format_summary(summary)
    assert "1 digit: %d" % summary["splits"]["test"]["cardinality_histogram"][1] in text


def test_seeded_and_deterministic(tmp_path):
    a = digits_data.make_dataset(str(tmp_path / "a"), 50, 20, seed=5, log=lambda s: None)
    b = digits_data.make_dataset(str(tmp_path / "b"), 50, 20, seed=5, log=lambda s: None)
    c = digits_data.make_dataset(str(tmp_path / "c"), 50, 20, seed=6, log=lambda s: None)
    for name in ("train", "test"):
        with h5py.File(a["splits"][name]["h5_file"]) as fa, h5py.File(b["splits"][name]["h5_file"]) as fb, \
                h5py.File(c["splits"][name]["h5_file"]) as fc:
            np.testing.assert_array_equal(fa["data"][()], fb["data"][()])
            np.testing.assert_array_equal(fa["label"][()], fb["label"][()])
            assert not np.array_equal(fa["data"][()], fc["data"][()])
