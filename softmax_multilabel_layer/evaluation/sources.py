"""The data sets a model folder is evaluated on besides a list file: an image LMDB, an HDF5 source.

``softmax-multilabel evaluate MODEL/`` reads every record of one of these exactly once, in the order a
Caffe data layer reads it:

* ``--lmdb IMAGES_LMDB``: Caffe ``Datum`` records, raw (C x H x W bytes, as ``convert_imageset`` and
  ``softmax-multilabel convert --format lmdb`` write them) or encoded images, in key order. Their labels come
  from ``--label-source``: an LMDB of ``Datum.float_data`` label rows (``convert``'s ``labels_lmdb``, the
  default when it sits beside the images) or an HDF5 file or HDF5Data list whose ``label`` dataset holds the
  N x C rows (the ``examples/image_lmdb_hdf5`` recipe).
* ``--hdf5 SOURCE``: an ``.h5`` file, or a text list of them as HDF5Data's ``source``, with datasets ``data``
  (N x C x H x W images, uint8 as ``convert --format hdf5`` writes them; or the net's own input arrays for a
  model whose input is an array) and ``label`` (N x C multi-hot).

Every file is checked, and the counts compared, before any net is built; a problem is one
:class:`MultilabelLossError` line naming the file.
"""
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.params import MultilabelLossError

LABELS_LMDB = "labels_lmdb"          # convert --format lmdb's label database, beside images_lmdb


def _caffe_pb2(option: str) -> Any:
    try:
        from caffe.proto import caffe_pb2
    except ImportError as exc:
        raise MultilabelLossError("%s needs pycaffe's caffe.proto.caffe_pb2 to read Datum records (%s); run "
                                  "`make setup`" % (option, exc)) from None
    return caffe_pb2


def _is_lmdb(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "data.mdb"))


def lmdb_count(path: str, option: str) -> int:
    """The number of records of the LMDB folder ``path`` (an error naming ``option`` if it is not one)."""
    if not os.path.exists(path):
        raise MultilabelLossError("%s %s does not exist" % (option, path))
    if not _is_lmdb(path):
        raise MultilabelLossError("%s %s is not an LMDB folder (no data.mdb in it)" % (option, path))
    import lmdb
    with lmdb.open(path, readonly=True, lock=False) as env:
        return int(env.stat()["entries"])


def hdf5_files(source: str, option: str) -> list[str]:
    """The ``.h5`` files of an HDF5 source: the file itself, or the files a text list names (HDF5Data's
    ``source``; relative paths as Caffe opens them, from the working folder), each checked to exist."""
    if not os.path.isfile(source):
        raise MultilabelLossError("%s %s does not exist" % (option, source))
    with open(source, "rb") as f:
        is_hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    if is_hdf5:
        return [source]
    with open(source, encoding="utf-8", errors="replace") as f:
        files = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if not files:
        raise MultilabelLossError("%s %s is neither an HDF5 file nor a list of HDF5 files (it is empty)"
                                  % (option, source))
    for n, path in files:
        if not os.path.isfile(path):
            raise MultilabelLossError("%s %s line %d: HDF5 file %s does not exist" % (option, source, n, path))
    return [path for _, path in files]


def hdf5_rows(files: list[str], dataset: str, option: str) -> list[tuple[str, int]]:
    """(file, rows of ``dataset``) for each file; an error naming the file if the dataset is missing."""
    import h5py
    out = []
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                if dataset not in f:
                    raise MultilabelLossError("%s: HDF5 file %s has no dataset %r (it has %s)"
                                              % (option, path, dataset, ", ".join(sorted(f)) or "none"))
                out.append((path, int(f[dataset].shape[0])))
        except OSError as exc:
            raise MultilabelLossError("%s: cannot read HDF5 file %s: %s" % (option, path, exc)) from None
    return out


def hdf5_labels(files: list[str], option: str) -> NDArray[Any]:
    """The ``label`` rows of the files, concatenated in order."""
    import h5py
    hdf5_rows(files, "label", option)
    parts = []
    for path in files:
        with h5py.File(path, "r") as f:
            parts.append(np.asarray(f["label"]).reshape(f["label"].shape[0], -1))
    return np.concatenate(parts)


def lmdb_labels(path: str, option: str) -> NDArray[np.float32]:
    """The ``Datum.float_data`` rows of a label LMDB, in key order."""
    import lmdb
    caffe_pb2 = _caffe_pb2(option)
    rows = []
    datum = caffe_pb2.Datum()
    with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
        for key, value in txn.cursor():
            datum.ParseFromString(value)
            if not datum.float_data:
                raise MultilabelLossError("%s %s: record %r holds no float_data label row (a label LMDB as "
                                          "`softmax-multilabel convert --format lmdb` writes it)"
                                          % (option, path, key.decode("utf-8", "replace")))
            rows.append(np.array(datum.float_data, np.float32))
    if len({len(r) for r in rows}) > 1:
        raise MultilabelLossError("%s %s: label rows of different lengths %s"
                                  % (option, path, sorted({len(r) for r in rows})))
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def labels_from(source: str, option: str) -> NDArray[Any]:
    """N x C label rows from an LMDB of float Datums or an HDF5 file / list (dataset ``label``)."""
    if os.path.isdir(source):
        lmdb_count(source, option)
        return lmdb_labels(source, option)
    return hdf5_labels(hdf5_files(source, option), option)


def lmdb_images(path: str, batch: int, option: str = "--lmdb") -> Iterator[list[Any]]:
    """The images of an LMDB of Datum records, ``batch`` at a time, in key order: H x W x C uint8 arrays (BGR or
    grey, as Caffe's Data layer holds them before its transform)."""
    import cv2
    import lmdb
    caffe_pb2 = _caffe_pb2(option)
    datum = caffe_pb2.Datum()
    images: list[Any] = []
    with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
        for key, value in txn.cursor():
            datum.ParseFromString(value)
            where = "%s %s record %r" % (option, path, key.decode("utf-8", "replace"))
            if datum.encoded:
                img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_ANYCOLOR)
                if img is None:
                    raise MultilabelLossError("%s: OpenCV cannot decode its encoded image" % where)
            elif datum.data:
                shape = (datum.channels, datum.height, datum.width)
                if len(datum.data) != int(np.prod(shape)):
                    raise MultilabelLossError("%s: %d bytes for a %dx%dx%d image" % ((where, len(datum.data)) + shape))
                img = np.frombuffer(datum.data, np.uint8).reshape(shape).transpose(1, 2, 0)
            else:
                raise MultilabelLossError("%s: no image bytes (float_data records are labels, not images)" % where)
            images.append(img)
            if len(images) == batch:
                yield images
                images = []
    if images:
        yield images


def hdf5_data(files: list[str], batch: int, as_images: bool, option: str = "--hdf5") -> Iterator[list[Any]]:
    """The ``data`` rows of the files, ``batch`` at a time: H x W x C uint8 images when ``as_images`` (the rows
    are C x H x W, as HDF5Data and ``convert`` hold them), else the rows as they are (a model whose input is an
    array)."""
    import h5py
    for path in files:
        with h5py.File(path, "r") as f:
            data = f["data"]
            if as_images and (data.ndim != 4 or data.shape[1] not in (1, 3)):
                raise MultilabelLossError("%s: HDF5 file %s: data must be N x C x H x W images with C = 1 or 3, got "
                                          "shape %s" % (option, path, data.shape))
            for start in range(0, data.shape[0], batch):
                rows = np.asarray(data[start:start + batch])
                if not as_images:
                    yield list(rows)
                    continue
                if rows.dtype != np.uint8:
                    if not (np.issubdtype(rows.dtype, np.number) and np.all(rows == np.round(rows))
                            and rows.min() >= 0 and rows.max() <= 255):
                        raise MultilabelLossError(
                            "%s: HDF5 file %s: data holds %s values that are not image pixels 0..255 (rows %d..): "
                            "the model's input is an image" % (option, path, rows.dtype, start))
                    rows = rows.astype(np.uint8)
                yield [np.ascontiguousarray(r.transpose(1, 2, 0)) for r in rows]


__all__ = ["LABELS_LMDB", "hdf5_data", "hdf5_files", "hdf5_labels", "hdf5_rows", "labels_from", "lmdb_count",
           "lmdb_images", "lmdb_labels"]
