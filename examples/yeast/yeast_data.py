"""The yeast multi-label data set, read from the installed ``river`` wheel, and the 10-fold protocol.

Yeast (Elisseeff & Weston, NIPS 2001; the MULAN version, OpenML 40597): 2,417 genes,
103 real features (Att1..Att103), 14 functional classes (Class1..Class14), 4.24 labels
per gene on average. ``make setup`` installs ``river==0.26.1`` (``--no-deps``, see
scripts/setup.sh), whose wheel ships it as ``river/datasets/yeast.csv.gz``: a header
line and 2,417 rows. Nothing is downloaded at run time.

    X, Y = load_yeast()                  # float64 (2417, 103), uint8 (2417, 14)
    for k, (train, test) in enumerate(outer_folds(len(X))): ...
"""
import csv
import gzip
import hashlib
import importlib.resources
import io
import sys

import numpy as np
from sklearn.model_selection import KFold

N_ROWS, N_FEATURES, N_LABELS = 2417, 103, 14
FEATURES = tuple("Att%d" % i for i in range(1, N_FEATURES + 1))
LABELS = tuple("Class%d" % i for i in range(1, N_LABELS + 1))
PACKAGE, RESOURCE = "river", "datasets/yeast.csv.gz"
# sha256 of the decompressed CSV text (so a re-compressed but identical file still
# passes), as shipped in river 0.26.0 and 0.26.1.
CSV_SHA256 = "fd17cb9b53acaaf5e82a9e0795e2667167775915c0e32c1f6fe0fadb0d3bd703"
N_FOLDS, FOLD_SEED = 10, 0


class YeastDataError(RuntimeError):
    """The yeast file is missing or is not the expected one."""


def yeast_path():
    """Path of ``river/datasets/yeast.csv.gz`` in the installed river package.

    ``importlib.resources.files("river")`` imports only river's two-line ``__init__``
    (its numpy 2 code is never imported, so river's requirements are not needed).
    """
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise YeastDataError(
            "yeast data: the 'river' package is not installed in this Python (%s); run `make setup`, "
            "which installs river==0.26.1 with --no-deps for its data file %s"
            % (sys.executable, RESOURCE)) from None
    path = root.joinpath(RESOURCE)
    if not path.is_file():
        raise YeastDataError(
            "yeast data: %s not found in the installed river package (%s); river releases before "
            "0.26.0 do not ship it: run `make setup` (installs river==0.26.1)" % (RESOURCE, root))
    return str(path)


def load_yeast(path=None, expected_sha256=CSV_SHA256):
    """Read and check the yeast CSV (gzip) -> (X, Y).

    Args:
        path: a ``yeast.csv.gz``; default: the one in the installed river package.
        expected_sha256: sha256 of the decompressed text; None skips the check.

    Returns:
        X: float64 array (2417, 103) in file order; Y: uint8 array (2417, 14) of 0/1.

    Raises:
        YeastDataError: naming the file, the value found and the value expected, if the
            checksum, the header, the shape or a label value differs.
    """
    path = path or yeast_path()
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise YeastDataError("yeast data: cannot read %s as gzip: %s" % (path, exc)) from None
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise YeastDataError(
            "yeast data: %s has sha256 %s (of the decompressed CSV), expected %s (river 0.26.1's "
            "file); the file is not the published yeast data set: reinstall with `make setup`"
            % (path, digest, expected_sha256))
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    expected_header = list(FEATURES + LABELS)
    if header != expected_header:
        raise YeastDataError("yeast data: %s line 1: header has %d columns starting %s, expected %d "
                             "columns Att1..Att103, Class1..Class14"
                             % (path, len(header), header[:3], len(expected_header)))
    widths = {len(r) for r in body}
    if len(body) != N_ROWS or widths != {len(expected_header)}:
        raise YeastDataError("yeast data: %s has %d data rows of %s columns, expected %d rows of %d"
                             % (path, len(body), sorted(widths), N_ROWS, len(expected_header)))
    table = np.array(body, dtype=np.float64)
    X, Y = table[:, :N_FEATURES], table[:, N_FEATURES:]
    bad = ~np.isin(Y, (0.0, 1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise YeastDataError("yeast data: %s line %d: %s = %r, expected 0 or 1"
                             % (path, r + 2, LABELS[c], Y[r, c]))
    if not np.isfinite(X).all():
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise YeastDataError("yeast data: %s line %d: %s = %r, expected a finite number"
                             % (path, r + 2, FEATURES[c], X[r, c]))
    return X, Y.astype(np.uint8)


def outer_folds(n=N_ROWS):
    """The benchmark's folds: ``KFold(10, shuffle=True, random_state=0)`` over the rows in file order.

    Returns a list of (train_index, test_index) pairs.
    """
    return list(KFold(n_splits=N_FOLDS, shuffle=True, random_state=FOLD_SEED).split(np.arange(n)))


def inner_split(train_index, n_splits=5, seed=0):
    """One inner split of an outer training fold: (fit_index, val_index), both subsets of it.

    ``KFold(n_splits, shuffle=True, random_state=seed)``'s first split over the training
    rows, so the validation part is 1/n_splits of the training fold and never touches
    the outer test fold.
    """
    train_index = np.asarray(train_index)
    fit, val = next(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(train_index))
    return train_index[fit], train_index[val]


def standardize(X_train, *others):
    """Scale to zero mean, unit variance with the statistics of ``X_train`` only.

    Returns the float32 arrays (X_train, *others) after scaling; a constant feature keeps scale 1.
    """
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    return tuple(((x - mean) / std).astype(np.float32) for x in (X_train,) + others)
