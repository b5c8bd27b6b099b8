"""Yeast loader (river's installed data file), its checks, and the fold protocol."""
import gzip
import hashlib
import importlib.resources
import os
import sys

import numpy as np
import pytest
from sklearn.model_selection import KFold

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "yeast"))
import yeast_data as D  # noqa: E402


@pytest.fixture(scope="module")
def yeast():
    return D.load_yeast()


def test_installed_file_loads_with_the_published_shape(yeast):
    X, Y = yeast
    assert D.yeast_path().endswith(os.path.join("river", "datasets", "yeast.csv.gz"))
    assert X.shape == (2417, 103) and X.dtype == np.float64
    assert Y.shape == (2417, 14) and Y.dtype == np.uint8
    # label cardinality 4.237 (MULAN's table), every gene has a class
    assert Y.sum(axis=1).mean() == pytest.approx(4.237, abs=5e-4)
    assert Y.sum(axis=1).min() >= 1
    # first row, first features, as in the file
    np.testing.assert_allclose(X[0, :3], [0.004168, -0.170975, -0.156748])


def _write_csv_gz(path, header, rows):
    text = ",".join(header) + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(text.encode())
    return hashlib.sha256(text.encode()).hexdigest()


def _copy_with_one_value_changed(src, dst):
    with gzip.open(src, "rb") as f:
        lines = f.read().decode().splitlines(keepends=True)
    first = lines[1].split(",")
    first[0] = "0.004169"                      # 0.004168 in the real file
    lines[1] = ",".join(first)
    with gzip.open(dst, "wb", compresslevel=1) as f:
        f.write("".join(lines).encode())


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    bad = tmp_path / "yeast.csv.gz"
    _copy_with_one_value_changed(D.yeast_path(), bad)
    with pytest.raises(D.YeastDataError) as e:
        D.load_yeast(str(bad))
    msg = str(e.value)
    assert str(bad) in msg and D.CSV_SHA256 in msg and "make setup" in msg
    # the same file passes when the check is off, so it is the checksum that failed
    X, _ = D.load_yeast(str(bad), expected_sha256=None)
    assert X[0, 0] == pytest.approx(0.004169)


def test_real_file_checksum_matches_constant():
    with gzip.open(D.yeast_path(), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == D.CSV_SHA256


def test_shape_header_and_label_errors(tmp_path):
    header = list(D.FEATURES + D.LABELS)
    row = [0.5] * 103 + [1] + [0] * 13
    short = tmp_path / "short.csv.gz"
    digest = _write_csv_gz(short, header, [row] * 10)
    with pytest.raises(D.YeastDataError, match=r"10 data rows of \[117\] columns, expected 2417 rows of 117"):
        D.load_yeast(str(short), expected_sha256=digest)
    renamed = tmp_path / "renamed.csv.gz"
    _write_csv_gz(renamed, ["x%d" % i for i in range(117)], [row])
    with pytest.raises(D.YeastDataError, match="line 1: header"):
        D.load_yeast(str(renamed), expected_sha256=None)
    bad_label = tmp_path / "label.csv.gz"
    rows = [row] * 2417
    rows = rows[:5] + [[0.5] * 103 + [2] + [0] * 13] + rows[6:]
    _write_csv_gz(bad_label, header, rows)
    with pytest.raises(D.YeastDataError, match=r"line 7: Class1 = 2.0, expected 0 or 1"):
        D.load_yeast(str(bad_label), expected_sha256=None)
    not_gzip = tmp_path / "plain.csv.gz"
    not_gzip.write_text("Att1\n")
    with pytest.raises(D.YeastDataError, match=r"cannot read .* as gzip"):
        D.load_yeast(str(not_gzip))


def test_missing_river_says_how_to_install(monkeypatch):
    def no_river(name):
        raise ModuleNotFoundError("No module named %r" % name)
    monkeypatch.setattr(importlib.resources, "files", no_river)
    with pytest.raises(D.YeastDataError, match=r"'river' package is not installed.*make setup.*river==0\.26\.1"):
        D.yeast_path()


def test_old_river_without_the_file(monkeypatch, tmp_path):
    (tmp_path / "datasets").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda name: tmp_path)
    with pytest.raises(D.YeastDataError, match=r"datasets/yeast\.csv\.gz not found .* before 0\.26\.0"):
        D.yeast_path()


def test_outer_folds_are_the_issue_kfold():
    folds = D.outer_folds(2417)
    ref = list(KFold(n_splits=10, shuffle=True, random_state=0).split(np.zeros(2417)))
    assert len(folds) == 10
    for (tr, te), (rtr, rte) in zip(folds, ref, strict=True):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(te, rte)
    tests = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(2417))     # a partition
    assert sorted(len(te) for _, te in folds) == [241] * 3 + [242] * 7
    # shuffled: not contiguous blocks of the file
    assert np.any(np.diff(folds[0][1]) > 1)


def test_inner_split_stays_inside_the_training_fold():
    for train, test in D.outer_folds(2417)[:3]:
        fit, val = D.inner_split(train)
        assert set(fit) | set(val) == set(train)
        assert not set(fit) & set(val)
        assert not (set(fit) | set(val)) & set(test)
        assert len(val) == pytest.approx(len(train) / 5, abs=1)
    a = D.inner_split(D.outer_folds()[4][0])
    b = D.inner_split(D.outer_folds()[4][0])
    np.testing.assert_array_equal(a[1], b[1])                          # deterministic


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_uses_training_statistics_only(dtype):
    rng = np.random.default_rng(0)
    train = (rng.normal(3.0, 2.0, (200, 5))).astype(dtype)
    train[:, 4] = 7.0                                                  # a constant feature
    test = rng.normal(-1.0, 0.5, (50, 5)).astype(dtype)
    tr, te = D.standardize(train, test)
    assert tr.dtype == te.dtype == np.float32
    np.testing.assert_allclose(tr[:, :4].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tr[:, :4].std(0), 1, atol=1e-5)
    expected = (test[:, 0] - train[:, 0].mean()) / train[:, 0].std()
    np.testing.assert_allclose(te[:, 0], expected, rtol=1e-5)
    assert abs(te[:, 0].mean()) > 1.0          # the test part is NOT centred on itself
    np.testing.assert_allclose(te[:, 4], test[:, 4] - 7.0, rtol=1e-5)  # constant: scale 1, no NaN
