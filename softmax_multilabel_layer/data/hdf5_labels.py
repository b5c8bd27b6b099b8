"""HDF5 files with multi-label targets for Caffe's ``HDF5Data`` layer: the *indices* format, and dense N x C labels
(:func:`write_dense_labels`).

A file holds (N = number of samples, K = label slots per sample):

* ``data``: the inputs, float32, N x ...;
* ``label``: N x K class indices stored as float32 (HDF5Data gives every top
  the net's float type), padded with -1 when a sample has fewer than K labels;
* ``label_weight`` (optional): N x K real-valued labels for the indices (0 on
  padding), fed to the layer's optional third bottom.

The matching layer: ``SoftmaxMultilabelLossLayer`` with
``param_str: '{"label_format": "indices"}'`` and bottoms ``scores``, ``label``
and optionally ``label_weight``. Dataset names are the HDF5Data top names, so
the layer reads::

    layer { name: "data" type: "HDF5Data" top: "data" top: "label" top: "label_weight"
            hdf5_data_param { source: "train_h5.txt" batch_size: 32 } }

where ``train_h5.txt`` lists one HDF5 path per line (:func:`write_list_file`).
No Caffe import here; ``h5py`` is imported when a function needs it.
"""
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from softmax_multilabel_layer.losses.labels import first_bad_index
from softmax_multilabel_layer.params import MultilabelLossError

DATA = "data"
LABEL = "label"
LABEL_WEIGHT = "label_weight"
PAD = -1


class IndexLabels(NamedTuple):
    """What :func:`read_index_labels` returns."""
    data: np.ndarray                 # float32, N x ...
    labels: np.ndarray               # float32, N x K, class indices padded with -1
    weights: Optional[np.ndarray]    # float32, N x K (0 on padding), or None
    num_classes: Optional[int]       # the C written by write_index_labels, or None if unknown

    def label_lists(self) -> list[list[int]]:
        """The labels as one list of int class indices per sample (padding dropped)."""
        return [[int(c) for c in row if c >= 0] for row in self.labels]

    def dense(self) -> np.ndarray:
        """N x C float32 dense labels (the weights, or 1, at the listed classes)."""
        if self.num_classes is None:
            raise MultilabelLossError("IndexLabels.dense: the file records no num_classes; "
                                      "call dense_from_indices(labels, num_classes, weights)")
        return dense_from_indices(self.labels, self.num_classes, self.weights)


def _as_label_lists(label_lists, owner):
    """A list of per-sample lists of class indices; a 2-D array is read as rows padded with -1."""
    if isinstance(label_lists, np.ndarray):
        if label_lists.ndim != 2:
            raise MultilabelLossError("%s: label_lists as an array must be N x K (padded with -1), got shape %s"
                                      % (owner, label_lists.shape))
        return [[v for v in row if not (isinstance(v, (int, float, np.number)) and v == PAD)]
                for row in label_lists.tolist()]
    try:
        return [list(row) for row in label_lists]
    except TypeError:
        raise MultilabelLossError("%s: label_lists must be a sequence of per-sample sequences of class indices, "
                                  "got %r" % (owner, type(label_lists).__name__)) from None


def _class_index(owner, sample, value, num_classes):
    if isinstance(value, (bool, np.bool_)):
        raise MultilabelLossError("%s: sample %d: label %r is a bool; expected an integer class index"
                                  % (owner, sample, value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != math.floor(value):
            raise MultilabelLossError("%s: sample %d: label %r is not an integer class index"
                                      % (owner, sample, value))
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise MultilabelLossError("%s: sample %d: label %r is not an integer class index" % (owner, sample, value))
    value = int(value)
    if not 0 <= value < num_classes:
        raise MultilabelLossError("%s: sample %d: label index %d is out of range; expected 0 <= index < "
                                  "num_classes = %d" % (owner, sample, value, num_classes))
    return value


def encode_index_labels(label_lists: Iterable[Iterable[Any]], num_classes: int, max_labels: Optional[int] = None,
                        weights: Optional[Iterable[Iterable[float]]] = None,
                        owner: str = "encode_index_labels") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Validate per-sample class lists and pack them into N x K float32 arrays.

    Returns ``(labels, label_weights)``: ``labels`` holds the indices padded
    with -1; ``label_weights`` is None when ``weights`` is None, else N x K
    with 0 on padding. K is ``max_labels``, or the longest list (at least 1).
    Raises :class:`MultilabelLossError` (a ``ValueError``) naming the sample for
    an index out of [0, num_classes), a non-integer or repeated index, a list
    longer than ``max_labels``, or a weight that is negative, not finite, or
    whose count differs from the sample's labels.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise MultilabelLossError("%s: num_classes must be a positive integer, got %r" % (owner, num_classes))
    num_classes = int(num_classes)
    rows = _as_label_lists(label_lists, owner)
    weight_rows = None
    if weights is not None:
        if isinstance(weights, np.ndarray):
            # An N x K weight array goes with an N x K padded index array: keep the weights of the real labels.
            if weights.ndim != 2 or not isinstance(label_lists, np.ndarray) or weights.shape != label_lists.shape:
                raise MultilabelLossError("%s: weights as an array must have the shape of the N x K label array, "
                                          "got %s" % (owner, weights.shape))
            # Same shape (checked above): every row and every pair of rows has the same length.
            pairs = zip(weights.tolist(), label_lists.tolist(), strict=True)  # pragma: no mutate (equal lengths)
            weight_rows = [[w for w, c in zip(wrow, crow, strict=True) if c != PAD]  # pragma: no mutate (as above)
                           for wrow, crow in pairs]
        else:
            weight_rows = _as_label_lists(weights, owner)
        if len(weight_rows) != len(rows):
            raise MultilabelLossError("%s: weights has %d samples but label_lists has %d"
                                      % (owner, len(weight_rows), len(rows)))
    longest = max((len(r) for r in rows), default=0)
    if max_labels is None:
        slots = max(1, longest)
    else:
        if isinstance(max_labels, bool) or not isinstance(max_labels, (int, np.integer)) or max_labels < 1:
            raise MultilabelLossError("%s: max_labels must be a positive integer, got %r" % (owner, max_labels))
        slots = int(max_labels)
    labels = np.full((len(rows), slots), PAD, np.float32)
    label_weights = None if weight_rows is None else np.zeros((len(rows), slots), np.float32)
    for i, row in enumerate(rows):
        if len(row) > slots:
            raise MultilabelLossError("%s: sample %d has %d labels but max_labels is %d"
                                      % (owner, i, len(row), slots))
        seen = set()
        for j, value in enumerate(row):
            c = _class_index(owner, i, value, num_classes)
            if c in seen:
                raise MultilabelLossError("%s: sample %d: label index %d appears twice; expected distinct "
                                          "class indices" % (owner, i, c))
            seen.add(c)
            labels[i, j] = c
        if weight_rows is not None:
            assert label_weights is not None        # allocated whenever weight_rows is given
            w = weight_rows[i]
            if len(w) != len(row):
                raise MultilabelLossError("%s: sample %d has %d labels but %d weights"
                                          % (owner, i, len(row), len(w)))
            for j, value in enumerate(w):
                if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                        or not math.isfinite(value) or value < 0:
                    raise MultilabelLossError("%s: sample %d: weight %r of label %d must be a finite number >= 0"
                                              % (owner, i, value, row[j]))
                label_weights[i, j] = value
    return labels, label_weights


def _write_h5(path, data, labels, label_weights, num_classes, label_format, compression):
    """One HDF5 file as Caffe's HDF5Data reads it: ``data`` (float32), ``label`` and optionally
    ``label_weight``, with the class count and label format as attributes; folders are created."""
    import h5py
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, data=data.astype(np.float32, copy=False),  # pragma: no mutate (copy=False saves a copy)
                         compression=compression)
        f.create_dataset(LABEL, data=labels, compression=compression)
        if label_weights is not None:
            f.create_dataset(LABEL_WEIGHT, data=label_weights, compression=compression)
        f.attrs["num_classes"] = num_classes
        f.attrs["label_format"] = label_format


def write_index_labels(path: str, data: ArrayLike, label_lists: Iterable[Iterable[Any]], num_classes: int,
                       max_labels: Optional[int] = None, weights: Optional[Iterable[Iterable[float]]] = None,
                       compression: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Write ``data`` and multi-labels in the indices format to the HDF5 file ``path``.

    ``data``: N x ... array (stored as float32). ``label_lists``: N sequences of
    class indices (possibly empty), or an N x K array padded with -1.
    ``weights``: optional per-label values, same structure as ``label_lists``.
    ``max_labels``: K, the label slots (default: the longest list, at least 1);
    use the same K in every file of one list file, since Caffe concatenates them.
    ``compression``: passed to h5py (e.g. ``"gzip"``); Caffe reads it if its
    HDF5 library has the filter. The file also records ``num_classes`` and
    ``label_format = "indices"`` as attributes. Returns ``(labels, weights)``
    as written. Raises :class:`MultilabelLossError` before writing anything if
    the labels are invalid (see :func:`encode_index_labels`).
    """
    owner = "write_index_labels"
    data = np.asarray(data)
    if data.ndim < 1 or data.shape[0] == 0:
        raise MultilabelLossError("%s: data must be an N x ... array with N >= 1, got shape %s" % (owner, data.shape))
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise MultilabelLossError("%s: data must be real numbers, got dtype %s" % (owner, data.dtype))
    labels, label_weights = encode_index_labels(label_lists, num_classes, max_labels, weights, owner)
    if labels.shape[0] != data.shape[0]:
        raise MultilabelLossError("%s: data has %d samples but label_lists has %d"
                                  % (owner, data.shape[0], labels.shape[0]))
    _write_h5(path, data, labels, label_weights, int(num_classes), "indices", compression)
    return labels, label_weights


def read_index_labels(path: str) -> IndexLabels:
    """Read a file written by :func:`write_index_labels` (or any HDF5 with ``data`` and ``label``).

    Returns an :class:`IndexLabels`. Checks that ``label`` is N x K with
    integer values >= -1 (< num_classes when recorded) and that
    ``label_weight``, if present, has the same shape.
    """
    import h5py
    owner = "read_index_labels"
    with h5py.File(path, "r") as f:  # pragma: no mutate (h5py's default mode is "r")
        for name in (DATA, LABEL):
            if name not in f:
                raise MultilabelLossError("%s: %s has no %r dataset (found %s)" % (owner, path, name, sorted(f.keys())))
        data = f[DATA][...]
        labels = f[LABEL][...].astype(np.float32, copy=False)  # pragma: no mutate (copy=False saves a copy)
        weights = f[LABEL_WEIGHT][...] if LABEL_WEIGHT in f else None
        weights = None if weights is None else weights.astype(np.float32, copy=False)  # pragma: no mutate (as above)
        num_classes = int(f.attrs["num_classes"]) if "num_classes" in f.attrs else None
    if labels.ndim != 2 or labels.shape[0] != data.shape[0]:
        raise MultilabelLossError("%s: %s: label must be N x K with N = %d samples, got shape %s"
                                  % (owner, path, data.shape[0], labels.shape))
    if weights is not None and weights.shape != labels.shape:
        raise MultilabelLossError("%s: %s: label_weight shape %s does not match label shape %s"
                                  % (owner, path, weights.shape, labels.shape))
    bad = first_bad_index(labels, num_classes if num_classes is not None else np.inf)
    if bad is not None:
        i, j = divmod(bad, labels.shape[1])
        raise MultilabelLossError("%s: %s: sample %d: label %r is not a class index in [0, %s) or -1"
                                  % (owner, path, i, labels[i, j].item(), num_classes))
    return IndexLabels(data, labels, weights, num_classes)


def dense_from_indices(labels: ArrayLike, num_classes: int, weights: Optional[ArrayLike] = None,
                       dtype: DTypeLike = np.float32) -> np.ndarray:
    """N x C dense labels from N x K indices padded with -1 (and optional N x K weights).

    A listed class gets its weight (1 without weights); everything else is 0.
    Raises :class:`MultilabelLossError` for out-of-range or repeated indices.
    """
    owner = "dense_from_indices"
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MultilabelLossError("%s: labels must be N x K (padded with -1), got shape %s" % (owner, labels.shape))
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != labels.shape:
            raise MultilabelLossError("%s: weights shape %s does not match labels shape %s"
                                      % (owner, weights.shape, labels.shape))
    # Validation (messages name the sample) comes from the same code as the writer.
    encode_index_labels(labels, num_classes, labels.shape[1], weights, owner)
    dense = np.zeros((labels.shape[0], int(num_classes)), dtype)
    rows, slots = np.nonzero(labels != PAD)
    values = 1 if weights is None else weights[rows, slots]
    dense[rows, labels[rows, slots].astype(np.int64)] = values
    return dense


def write_list_file(list_path: str, h5_paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
                    absolute: bool = True) -> list[str]:
    """Write the text file HDF5Data's ``source`` reads: one HDF5 path per line.

    Paths are made absolute by default, since Caffe resolves relative paths
    against its working directory, not the list file's folder.
    """
    if isinstance(h5_paths, (str, os.PathLike)):
        h5_paths = [h5_paths]
    lines = [os.path.abspath(os.fspath(p)) if absolute else os.fspath(p) for p in h5_paths]
    if not lines:
        raise MultilabelLossError("write_list_file: no HDF5 paths given")
    directory = os.path.dirname(os.fspath(list_path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(list_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def write_dense_labels(path: str, data: ArrayLike, labels: ArrayLike, compression: Optional[str] = None) -> np.ndarray:
    """Write ``data`` and dense multi-hot (or real-valued) N x C labels to the HDF5 file ``path``.

    The format every Caffe label layer reads directly: ``label`` is an N x C
    float32 dataset (1 = positive, 0 = negative; real values >= 0 allowed),
    fed with ``data`` by Caffe's ``HDF5Data`` layer to
    ``SoftmaxMultilabelLossLayer`` (default ``label_format: "dense"``) or
    ``SigmoidMultilabelLossLayer``. Use it for up to a few hundred classes;
    beyond that :func:`write_index_labels` stores the same labels in a
    fraction of the space.

    Args:
        path: the HDF5 file to write (its folder is created).
        data: N x ... inputs, stored as float32 under ``data``.
        labels: N x C array-like of labels, finite and >= 0 (bool and integer
            arrays are converted), stored as float32 under ``label``.
        compression: passed to h5py (e.g. ``"gzip"``).

    Returns:
        The float32 labels as written. Raises :class:`MultilabelLossError`
        before writing anything for a wrong shape or a negative, NaN or
        infinite label (naming the sample and class).

    Example::

        write_dense_labels("train.h5", images, [[1, 0, 1], [0, 1, 0]])
        write_list_file("train_h5.txt", ["train.h5"])   # HDF5Data's source
    """
    owner = "write_dense_labels"
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim < 1 or data.shape[0] == 0:
        raise MultilabelLossError("%s: data must be an N x ... array with N >= 1, got shape %s" % (owner, data.shape))
    if labels.ndim != 2 or labels.shape[0] != data.shape[0]:
        raise MultilabelLossError("%s: labels must be N x C with N = %d samples (the data's first axis), got shape %s"
                                  % (owner, data.shape[0], labels.shape))
    if labels.dtype.kind not in ("b", "i", "u", "f"):
        raise MultilabelLossError("%s: labels must be numbers, got dtype %s" % (owner, labels.dtype))
    labels = labels.astype(np.float32)
    bad = ~(np.isfinite(labels) & (labels >= 0))
    if bad.any():
        i, c = (int(v) for v in np.argwhere(bad)[0])
        raise MultilabelLossError("%s: sample %d, class %d: label %r must be finite and >= 0 (0 = negative)"
                                  % (owner, i, c, labels[i, c].item()))
    _write_h5(path, data, labels, None, int(labels.shape[1]), "dense", compression)
    return labels
