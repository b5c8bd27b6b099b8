"""``softmax-multilabel convert``: a multi-label image list to HDF5 files or to an image LMDB plus a label LMDB.

Reads the list format of :mod:`.image_data` (same parser, same errors) and decodes
images as Caffe's ``ImageData`` does (OpenCV, BGR, optional resize), in threads.

* ``hdf5``: ``part-00000.h5``, ... with datasets ``data`` (N x C x H x W, uint8 by
  default: Caffe's HDF5Data reads integers into its float blobs) and ``label``
  (N x C multi-hot, or N x K indices padded with -1 plus ``label_weight``), each
  file under ``max_file_bytes`` (default 950 MB, below HDF5Data's ~2 GB
  trouble); ``list.txt``, the file HDF5Data's ``source`` reads.
* ``lmdb``: ``images_lmdb`` of ``Datum`` records (raw CHW bytes, or the encoded
  image) and ``labels_lmdb`` with the labels in ``Datum.float_data``
  (channels = C or K), and for indices ``label_weights_lmdb``, under the same
  keys ``%08d_<path>`` (Caffe's Data layer reads keys in order, so the two Data
  layers stay in step). Needs pycaffe for ``caffe_pb2``.

Both write ``convert.json`` (options, list checksum, progress), which also marks
the folder as made by ``convert``.

**The user's files are never touched.** Everything is written into a sibling
folder ``.<out>.convert-partial`` and renamed to ``out`` only when complete and
verified, so an interrupted run leaves nothing at ``out`` that a ``Data`` or
``HDF5Data`` layer could read. ``resume`` continues an interrupted run with the
same options and list. ``overwrite`` replaces only a previous conversion: a
folder with ``convert.json`` that holds nothing but convert's own files; any
other non-empty folder (one holding the user's images, notes, ...) is refused,
with or without ``overwrite``. Ctrl-C (SIGINT) stops the run after the image in
hand, says so and exits with status 130; ``resume`` continues it.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import IO, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.data.image_data import (
    ImageDecodeError,
    ImageList,
    check_files_exist,
    encode_labels,
    load_image,
    parse_image_list,
)
from softmax_multilabel_layer.params import ImageDataOptions, MultilabelLossError

OWNER = "softmax-multilabel convert"
MANIFEST = "convert.json"
FORMATS = ("hdf5", "lmdb")
CHUNK = 256                     # images decoded (and committed, for LMDB) per step
LMDB_MAP_SIZE = 1 << 40         # sparse: only what is written takes disk space
PARTIAL = ".convert-partial"    # .<out>.convert-partial: the folder a run writes into, renamed to out when complete
OLD = ".convert-old"            # .<out>.convert-old: a replaced previous conversion, deleted after the rename
# Every name convert writes into its folder; a folder holding anything else is never replaced.
OWN_NAMES = re.compile(r"(convert\.json(\.tmp)?|list\.txt|part-[0-9]{5}\.h5|(images|labels|label_weights)_lmdb)")
MAX_NAMED = 5                   # foreign entries named in an error

# convert.json: {"settings": {...}, "written": int, "parts": [...], "complete": bool, "image_shape": [C, H, W]}
Manifest = dict[str, Any]
# The order images are written in: list indices (a permutation of range(N) with shuffle).
Order = NDArray[np.integer[Any]]


class Progress(object):
    """A one-line progress bar on a stream: count, percent, rate and time left (a line per 10% off a TTY)."""

    def __init__(self, total: int, done: int = 0, stream: IO[str] | None = None, label: str = "images") -> None:
        self.total, self.done, self.label = total, done, label
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start: float | None = None
        self.start_done, self.last, self.last_decile = done, 0.0, -1

    def note(self, message: str) -> None:
        """A line of its own (after the bar on a TTY)."""
        self.stream.write(("\n" if self.tty else "") + message + "\n")
        self.stream.flush()

    def update(self, n: int) -> None:
        now = time.monotonic()
        if self.start is None:          # the rate counts from the first image, not from start-up
            self.start, self.start_done = now - 1e-3, self.done
        self.done += n
        decile = 10 * self.done // max(1, self.total)
        if (self.tty and now - self.last > 0.3) or (not self.tty and decile > self.last_decile) \
                or self.done >= self.total:
            self.last, self.last_decile = now, decile
            rate = (self.done - self.start_done) / (now - self.start)        # > 0: start is 1 ms before
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            line = "convert: %d/%d %s (%3.0f%%), %.0f/s, %s left" % (
                self.done, self.total, self.label, 100.0 * self.done / max(1, self.total), rate,
                "%d s" % left if left == left else "?")
            self.stream.write(("\r" + line) if self.tty else line + "\n")
            if self.tty and self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class ConvertInterrupted(MultilabelLossError):
    """Ctrl-C (SIGINT) stopped a conversion; the partial output is kept for ``resume``."""


class _StopOnSigint(object):
    """While active (in the main thread), the first SIGINT only sets :attr:`requested`; :meth:`check` raises.

    A KeyboardInterrupt raised at a random point can be swallowed (for instance inside a finalizer of h5py,
    printed as "Exception ignored"), so the run went on and exited 0; a flag checked after each image cannot.
    A second Ctrl-C gets Python's default behaviour back.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __enter__(self) -> "_StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self.previous)

    def check(self, done: int, total: int, work: str) -> None:
        if self.requested:
            raise ConvertInterrupted("%s: interrupted (Ctrl-C) after %d of %d images; nothing was written to the "
                                     "output folder; the partial conversion is in %s: run the same command with "
                                     "--resume to continue it" % (OWNER, done, total, work))


def work_folder(out: str) -> str:
    """The folder a conversion into ``out`` writes to: ``.<name>.convert-partial`` next to ``out``."""
    out = os.path.abspath(out)
    return os.path.join(os.path.dirname(out), "." + os.path.basename(out) + PARTIAL)


def _foreign_entries(folder: str) -> list[str]:
    """The entries of ``folder`` that convert does not write (sorted)."""
    return sorted(name for name in os.listdir(folder) if not OWN_NAMES.fullmatch(name))


def _check_own(folder: str, what: str, images: ImageList) -> None:
    """Raise unless ``folder`` was made by convert (has convert.json) and holds nothing but convert's files."""
    if not os.path.isdir(folder):
        raise MultilabelLossError("%s: %s %s exists and is not a folder" % (OWNER, what, folder))
    inside = _images_inside(folder, images)
    if inside is not None:
        raise MultilabelLossError("%s: %s %s holds listed image %r (%s); convert never replaces a folder with "
                                  "your images in it: choose another --out" % (OWNER, what, folder,
                                                                              images.paths[inside],
                                                                              images.where(inside)))
    if not os.path.isfile(os.path.join(folder, MANIFEST)):
        raise MultilabelLossError("%s: %s %s is not empty and was not made by convert (it has no %s); convert "
                                  "only replaces its own output: choose a new or empty folder"
                                  % (OWNER, what, folder, MANIFEST))
    foreign = _foreign_entries(folder)
    if foreign:
        raise MultilabelLossError("%s: %s %s holds files convert did not write (%s%s); convert only replaces a "
                                  "folder that holds nothing but its own output: move them or choose another "
                                  "folder" % (OWNER, what, folder, ", ".join(foreign[:MAX_NAMED]),
                                              ", ..." if len(foreign) > MAX_NAMED else ""))


def _images_inside(folder: str, images: ImageList) -> int | None:
    """The index of the first listed image under ``folder`` (resolved paths), or None."""
    prefix = os.path.join(os.path.realpath(folder), "")
    for i, path in enumerate(images.paths):
        if os.path.realpath(path).startswith(prefix):
            return i
    return None


def _nonempty(folder: str) -> bool:
    return os.path.lexists(folder) and (not os.path.isdir(folder) or bool(os.listdir(folder)))


def _prepare_output(out: str, settings: dict[str, Any], resume: bool, overwrite: bool,
                    images: ImageList) -> Manifest:
    """Check ``out`` and the work folder; returns the manifest to continue from (or a fresh one).

    Nothing is deleted here but a previous partial run of convert (with ``overwrite``); ``out`` itself is
    replaced only when the new conversion is complete (:func:`_publish`).
    """
    work = work_folder(out)
    if _nonempty(out):
        _check_own(out, "output folder", images)
        if resume and not _nonempty(work):
            raise MultilabelLossError("%s: cannot resume: %s is a complete conversion and there is no interrupted "
                                      "one (%s); pass --overwrite to convert again" % (OWNER, out, work))
        if not overwrite and not resume:
            raise MultilabelLossError("%s: output folder %s exists and is not empty; pass --overwrite to replace "
                                      "it (a previous conversion)" % (OWNER, out))
    if _nonempty(work):
        _check_own(work, "work folder", images)
        if overwrite:
            shutil.rmtree(work)
        elif resume:
            with open(os.path.join(work, MANIFEST)) as f:
                manifest: Manifest = json.load(f)
            changed = sorted(k for k in set(settings) | set(manifest["settings"])
                             if settings.get(k) != manifest["settings"].get(k))
            if changed:
                raise MultilabelLossError("%s: cannot resume %s: %s changed since the interrupted run (%s); use "
                                          "--overwrite to start again" % (OWNER, work, ", ".join(changed), "; ".join(
                                              "%s was %r, now %r" % (k, manifest["settings"].get(k), settings.get(k))
                                              for k in changed)))
            return manifest
        else:
            raise MultilabelLossError("%s: an interrupted conversion into %s is in %s; pass --resume to continue "
                                      "it or --overwrite to start again" % (OWNER, out, work))
    os.makedirs(work, exist_ok=True)
    manifest = {"settings": settings, "written": 0, "parts": [], "complete": False}
    _save_manifest(work, manifest)          # the marker, before anything else is written
    return manifest


def _publish(work: str, out: str, images: ImageList) -> None:
    """Rename the complete ``work`` folder to ``out``; a previous conversion at ``out`` is checked again and
    moved aside first, then deleted."""
    old = None
    if os.path.lexists(out):
        if _nonempty(out):
            _check_own(out, "output folder", images)
            old = os.path.join(os.path.dirname(os.path.abspath(out)), "." + os.path.basename(os.path.abspath(out))
                               + OLD)
            if os.path.lexists(old):
                _check_own(old, "old output folder", images)
                shutil.rmtree(old)
            os.rename(out, old)
        else:
            os.rmdir(out)                   # an empty folder
    os.rename(work, out)
    if old is not None:
        shutil.rmtree(old)


def _save_manifest(out: str, manifest: Manifest) -> None:
    tmp = os.path.join(out, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out, MANIFEST))


def _decoded(options: ImageDataOptions, images: ImageList, order: Order, start: int, threads: int,
             stop: _StopOnSigint, work: str,
             progress: "Progress") -> Iterator[tuple[int, int, NDArray[np.uint8] | None]]:
    """Yield (position, index, uint8 image) from ``start`` in list order, decoding ``threads`` at a time.

    With ``skip_bad_images`` an image that cannot be decoded is reported (once: each is read once) on the
    progress stream and yielded as None. Raises :class:`ConvertInterrupted` before the next image once Ctrl-C
    was pressed.
    """
    def load(i: int) -> tuple[int, NDArray[np.uint8] | str]:
        try:
            return i, load_image(images.paths[i], options.is_color, options.new_height, options.new_width,
                                 images.where(i), OWNER)
        except ImageDecodeError as exc:
            if not options.skip_bad_images:
                raise ImageDecodeError("%s; pass --skip-bad-images to leave bad images out" % exc) from None
            return i, str(exc)[len(OWNER) + 2:]
    pool = concurrent.futures.ThreadPoolExecutor(threads)
    try:
        for chunk in range(start, len(order), CHUNK):
            for j, (i, img) in enumerate(pool.map(load, order[chunk:chunk + CHUNK])):
                stop.check(chunk + j, len(order), work)
                if isinstance(img, str):
                    progress.note("%s: skip_bad_images: %s; left out" % (OWNER, img))
                    yield chunk + j, int(i), None
                else:
                    yield chunk + j, int(i), img
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # pragma: no mutate (when threads stop, not what is written)


def convert(source: str, out: str, fmt: str, num_classes: int | None = None, class_names: str | None = None,
            root_folder: str = "", new_height: int = 0, new_width: int = 0, is_color: bool = True,
            label_format: str = "dense", max_labels: int | None = None, shuffle: bool = False, seed: int = 0,
            encoded: bool = False, hdf5_dtype: str = "uint8", max_file_bytes: int = 950 * 10 ** 6, threads: int = 2,
            resume: bool = False, overwrite: bool = False, batch_size: int = 32, skip_bad_images: bool = False,
            stream: IO[str] | None = None) -> dict[str, Any]:
    """Convert a multi-label image list; returns a summary dict (counts, paths, the prototxt to use).

    Args:
        source: the list file. fmt: ``"hdf5"`` or ``"lmdb"``. out: the output folder.
        num_classes, class_names, root_folder, new_height, new_width, is_color, label_format, max_labels:
            as for :class:`~softmax_multilabel_layer.data.MultilabelImageDataLayer`.
        shuffle, seed: write the images in a seeded random order (Caffe's HDF5Data and Data layers read in order).
        encoded: LMDB only: store the image file instead of raw pixels (after a resize or with greyscale, the
            decoded image re-encoded as PNG, lossless).
        hdf5_dtype: ``"uint8"`` (pixels as read, 4x smaller) or ``"float32"``.
        max_file_bytes: HDF5 files are split to stay under this size.
        threads: decode threads. resume / overwrite: see the module docstring.
        batch_size: used in the printed prototxt only.
        skip_bad_images: leave out listed files that do not exist (one warning naming every line) and images
            that cannot be decoded (each reported once); the summary counts them (``skipped``).

    Raises :class:`MultilabelLossError` for a bad list (file and line), missing images, an image that cannot
    be decoded or whose size differs from the first one (HDF5), or an output folder that exists.
    """
    if fmt not in FORMATS:
        raise MultilabelLossError("%s: --format must be one of %s, got %r" % (OWNER, ", ".join(FORMATS), fmt))
    if hdf5_dtype not in ("uint8", "float32"):
        raise MultilabelLossError("%s: hdf5_dtype must be uint8 or float32, got %r" % (OWNER, hdf5_dtype))
    if encoded and fmt != "lmdb":
        raise MultilabelLossError("%s: --encoded is for --format lmdb only" % OWNER)
    if resume and overwrite:
        raise MultilabelLossError("%s: --resume and --overwrite exclude each other" % OWNER)
    options = ImageDataOptions(owner=OWNER, source=source, root_folder=root_folder, num_classes=num_classes,
                               class_names=class_names, label_format=label_format, max_labels=max_labels,
                               new_height=new_height, new_width=new_width, is_color=is_color, seed=seed,
                               threads=threads, batch_size=batch_size, skip_bad_images=skip_bad_images)
    images = parse_image_list(source, options.num_classes, class_names, root_folder, max_labels, OWNER)
    listed = len(images.paths)
    images = check_files_exist(images, OWNER, root_folder, skip_bad_images)
    n = len(images.paths)
    order: Order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    settings = {"format": fmt, "source": os.path.abspath(source), "source_sha256": _sha256(source),
                "root_folder": root_folder, "num_classes": images.num_classes, "class_names": class_names,
                "new_height": new_height, "new_width": new_width, "is_color": is_color, "label_format": label_format,
                "max_labels": max_labels, "shuffle": shuffle, "seed": seed, "encoded": encoded,
                "hdf5_dtype": hdf5_dtype, "max_file_bytes": max_file_bytes, "images": n,
                "skip_bad_images": skip_bad_images}
    manifest = _prepare_output(out, settings, resume, overwrite, images)
    work = work_folder(out)
    progress = Progress(n, manifest["written"], stream)
    manifest["skipped"] = [p for p in manifest.get("skipped", []) if p < manifest["written"]]   # redone on resume
    writer = _write_hdf5 if fmt == "hdf5" else _write_lmdb
    with _StopOnSigint() as stop:
        summary = writer(options, images, order, Folders(work, os.path.abspath(out), stop), manifest, progress)
        stop.check(n, n, work)
    manifest["complete"] = True
    _save_manifest(work, manifest)
    _publish(work, out, images)
    bad = len(manifest["skipped"]) + listed - n
    if bad:
        progress.note("%s: skip_bad_images: left out %d bad image(s) of the %d listed (missing: %d, cannot be "
                      "decoded: %d)" % (OWNER, bad, listed, listed - n, len(manifest["skipped"])))
    summary.update(images=n - len(manifest["skipped"]), out=out, format=fmt, resumed_from=progress.start_done,
                   skipped=bad)
    return summary


def _labels_for(options: ImageDataOptions, images: ImageList,
                indices: Sequence[int]) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    k = options.label_width(images.num_classes)
    labels = np.zeros((len(indices), k), np.float32)
    weights = np.zeros((len(indices), k), np.float32) if options.label_format == "indices" else None
    encode_labels(images, indices, labels, options.label_format, weights)
    return labels, weights


def _size_error(images: ImageList, i: int, shape: Sequence[int], first: Sequence[int]) -> MultilabelLossError:
    return MultilabelLossError("%s: image %r (%s) is %s but the first image is %s; an HDF5 dataset "
                               "needs one size: pass --new-height and --new-width"
                               % (OWNER, images.paths[i], images.where(i), "x".join("%d" % d for d in shape),
                                  "x".join("%d" % d for d in first)))


class Folders(NamedTuple):
    """Where a writer writes (``work``), where its output will be (``out``), and the Ctrl-C flag."""
    work: str
    out: str
    stop: _StopOnSigint


# ---------------------------------------------------------------- HDF5

def _close_part(handle: Any, datasets: list[Any], rows: int, num_classes: int, label_format: str) -> None:
    for dataset in datasets:
        if dataset.shape[0] != rows:
            dataset.resize(rows, axis=0)
    handle.attrs["num_classes"] = num_classes
    handle.attrs["label_format"] = label_format
    handle.close()


def _write_hdf5(options: ImageDataOptions, images: ImageList, order: Order, folders: Folders, manifest: Manifest,
                progress: Progress) -> dict[str, Any]:
    import h5py
    work = folders.work
    dtype = np.dtype(manifest["settings"]["hdf5_dtype"])
    k = options.label_width(images.num_classes)
    start = manifest["written"]
    # parts written completely before an interruption stay; a part being written is redone
    handle, shape = None, manifest.get("image_shape")
    label_names = ("label", "label_weight") if options.label_format == "indices" else ("label",)
    try:
        for pos, i, img in _decoded(options, images, order, start, options.threads, folders.stop, work, progress):
            progress.update(1)
            if img is None:
                manifest["skipped"].append(pos)
                continue
            chw = img.transpose(2, 0, 1)
            if shape is None:
                shape = manifest["image_shape"] = list(chw.shape)
            elif list(chw.shape) != shape:
                raise _size_error(images, i, img.shape, (shape[1], shape[2], shape[0]))
            if handle is None:
                row_bytes = int(np.prod(shape)) * dtype.itemsize + 4 * k * (2 if options.label_format == "indices"
                                                                            else 1)
                part_rows = max(1, min(len(order) - pos, manifest["settings"]["max_file_bytes"] // row_bytes))
                part = "part-%05d.h5" % len(manifest["parts"])
                handle = h5py.File(os.path.join(work, part), "w")
                # with skip_bad_images, resizable (chunked as h5py chooses): the last part shrinks when images
                # were left out
                grow = options.skip_bad_images
                data = handle.create_dataset("data", (part_rows,) + tuple(shape), dtype,
                                             maxshape=(None,) + tuple(shape) if grow else None)
                datasets = [data] + [handle.create_dataset(name, (part_rows, k), np.float32,
                                                           maxshape=(None, k) if grow else None)
                                     for name in label_names]
                label, weight = datasets[1], datasets[2] if len(datasets) > 2 else None
                first, rows = pos, 0
            data[rows] = chw
            lab, wts = _labels_for(options, images, [i])
            label[rows] = lab[0]
            if weight is not None:
                assert wts is not None             # both exist exactly with label_format indices
                weight[rows] = wts[0]
            rows += 1
            if rows == part_rows:
                _close_part(handle, datasets, rows, images.num_classes, options.label_format)
                handle = None
                manifest["parts"].append({"file": part, "rows": rows, "first": first})
                manifest["written"] = pos + 1
                _save_manifest(work, manifest)
        if handle is not None:          # the last part is short when bad images were left out
            _close_part(handle, datasets, rows, images.num_classes, options.label_format)
            handle = None
            manifest["parts"].append({"file": part, "rows": rows, "first": first})
        manifest["written"] = len(order)
        _save_manifest(work, manifest)
    finally:
        if handle is not None:          # a part left unfinished (error or Ctrl-C): redone on resume
            handle.close()
    list_path = os.path.join(work, "list.txt")
    paths = [os.path.join(folders.out, p["file"]) for p in manifest["parts"]]     # where they will be
    with open(list_path, "w") as f:
        f.write("".join(p + "\n" for p in paths))
    # verify: every file holds the rows the manifest says, and they add up to the list
    total = 0
    for part in manifest["parts"]:
        with h5py.File(os.path.join(work, part["file"])) as f:           # h5py's default mode: "r"
            counts = {name: f[name].shape[0] for name in f}
        if set(counts.values()) != {part["rows"]}:
            raise MultilabelLossError("%s: %s holds %s rows, expected %d" % (OWNER, part["file"], counts,
                                                                            part["rows"]))
        total += part["rows"]
    if total != len(order) - len(manifest["skipped"]):
        raise MultilabelLossError("%s: the HDF5 files hold %d images but the list has %d (%d left out)"
                                  % (OWNER, total, len(order), len(manifest["skipped"])))
    list_path = os.path.join(folders.out, "list.txt")
    tops = ' top: "data" top: "label"' + (' top: "label_weight"' if options.label_format == "indices" else "")
    prototxt = TEST_NOTE.join('layer { name: "data" type: "HDF5Data"%s include { phase: %s }\n  hdf5_data_param { '
                              'source: "%s" batch_size: %d } }\n' % (tops, phase, list_path, options.batch_size)
                              for phase in PHASES)
    return {"files": paths, "list": list_path, "counts": {"data": total, "label": total}, "prototxt": prototxt}


# ---------------------------------------------------------------- LMDB

def _datum_module() -> Any:
    try:
        from caffe.proto import caffe_pb2
    except ImportError as exc:
        raise MultilabelLossError("%s: --format lmdb needs pycaffe's caffe.proto.caffe_pb2 (%s); run `make setup`"
                                  % (OWNER, exc)) from None
    return caffe_pb2


def _lmdb() -> Any:
    try:
        import lmdb
    except ImportError as exc:
        raise MultilabelLossError("%s: --format lmdb needs the lmdb package (%s): pip install lmdb"
                                  % (OWNER, exc)) from None
    return lmdb


def lmdb_key(position: int, path: str) -> bytes:
    """The key of the position-th record: ``%08d_<path>`` as Caffe's convert_imageset, at most 500 bytes."""
    return ("%08d_%s" % (position, path)).encode("utf-8")[:500]


def _image_datum(caffe_pb2: Any, cv2: Any, img: NDArray[np.uint8], path: str, options: ImageDataOptions,
                 encoded: bool) -> bytes:
    datum = caffe_pb2.Datum()
    datum.height, datum.width, datum.channels = img.shape[0], img.shape[1], img.shape[2]
    if encoded:
        if not options.new_height and options.is_color:
            with open(path, "rb") as f:
                datum.data = f.read()
        else:                   # resized or grey: re-encoded losslessly, so Caffe decodes exactly these pixels
            ok, buf = cv2.imencode(".png", img)  # pragma: no mutate (OpenCV takes ".PNG" too)
            if not ok:  # pragma: no mutate (unreachable: OpenCV encodes any 8-bit image as PNG)
                raise MultilabelLossError(  # pragma: no mutate (as above)
                    "%s: OpenCV cannot encode image %r as PNG" % (OWNER, path))  # pragma: no mutate (as above)
            datum.data = buf.tobytes()
        datum.encoded = True
    else:
        datum.data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()
    return datum.SerializeToString()


def _float_datum(caffe_pb2: Any, values: NDArray[np.float32]) -> bytes:
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = len(values), 1, 1
    datum.float_data.extend(values.tolist())
    return datum.SerializeToString()


def _put_records(txns: list[Any], caffe_pb2: Any, cv2: Any, options: ImageDataOptions, images: ImageList, pos: int,
                 i: int, img: NDArray[np.uint8], encoded: bool) -> None:
    """The records of list image i, the pos-th written: its image, its labels (and label weights)."""
    key = lmdb_key(pos, os.path.relpath(images.paths[i], options.root_folder) if options.root_folder
                   else images.paths[i])
    txns[0].put(key, _image_datum(caffe_pb2, cv2, img, images.paths[i], options, encoded))
    labels, weights = _labels_for(options, images, [i])
    txns[1].put(key, _float_datum(caffe_pb2, labels[0]))
    if weights is not None:
        txns[2].put(key, _float_datum(caffe_pb2, weights[0]))


def _write_lmdb(options: ImageDataOptions, images: ImageList, order: Order, folders: Folders, manifest: Manifest,
                progress: Progress) -> dict[str, Any]:
    caffe_pb2, lmdb = _datum_module(), _lmdb()
    import cv2
    names = ["images_lmdb", "labels_lmdb"] + (["label_weights_lmdb"] if options.label_format == "indices" else [])
    work = folders.work
    envs = {name: lmdb.open(os.path.join(work, name), map_size=LMDB_MAP_SIZE) for name in names}
    encoded = manifest["settings"]["encoded"]
    # Records are committed CHUNK at a time, all databases together, and "written" after that: on resume the
    # chunk in progress is written again under the same keys (a put replaces).
    start = manifest["written"]
    try:
        txns = None
        for pos, i, img in _decoded(options, images, order, start, options.threads, folders.stop, work, progress):
            if txns is None:
                txns = [env.begin(write=True) for env in envs.values()]
            progress.update(1)
            if img is None:
                manifest["skipped"].append(pos)
            else:
                _put_records(txns, caffe_pb2, cv2, options, images, pos, i, img, encoded)
            if (pos + 1) % CHUNK == 0 or pos + 1 == len(order):
                for txn in txns:
                    txn.commit()
                txns = None
                manifest["written"] = pos + 1
                _save_manifest(work, manifest)
        counts = {name: env.stat()["entries"] for name, env in envs.items()}
        keys = []
        for env in envs.values():
            with env.begin() as txn:
                cursor = txn.cursor()
                keys.append((cursor.first() and cursor.key(), cursor.last() and cursor.key()))
    finally:
        for env in envs.values():
            env.close()
    if set(counts.values()) != {len(order) - len(manifest["skipped"])} or len(set(keys)) != 1:
        raise MultilabelLossError("%s: the LMDBs hold %s records (first/last keys %s) but the list has %d images"
                                  % (OWNER, counts, keys, len(order)))
    paths = [os.path.join(folders.out, name) for name in names]          # where they will be
    return {"databases": paths, "counts": counts, "prototxt": lmdb_prototxt(paths, options.batch_size, encoded,
                                                                            options.is_color)}


PHASES = ("TRAIN", "TEST")
TEST_NOTE = "# TEST phase: set source to the conversion of your test list\n"


def lmdb_prototxt(databases: Sequence[str], batch_size: int, encoded: bool, is_color: bool = True) -> str:
    """The layers that read a conversion to LMDB, for the TRAIN and the TEST phase (``include { phase }``).

    Args:
        databases: the images, labels (and label weights) LMDBs. batch_size: N. encoded: the images are files.
        is_color: the list was converted in colour (else grey).

    Returns:
        Prototxt text: per phase a ``Data`` layer for the images (``top: "data"``) and one per label LMDB,
        each label one flattened to N x C (or N x K). For encoded images ``transform_param`` carries
        ``force_color: true`` (``force_gray`` for grey), so Caffe decodes every file as the list means it
        (as ``ImageData`` does: 3 channels BGR, 8 bits, EXIF orientation applied); without it a grey JPEG among
        colour ones, a 16-bit or an alpha PNG abort Caffe or change the channel count.
    """
    force = (" force_color: true" if is_color else " force_gray: true") if encoded else ""
    layer = ('layer { name: "%s" type: "Data" top: "%s" include { phase: %s }%s\n  data_param { source: "%s" '
             'backend: LMDB batch_size: %d } }\n')
    transform = "\n  transform_param {%s mirror: false }  # crop_size, mean_value, scale go here; never on labels"
    blocks = []
    for phase in PHASES:
        # TEST layers have their own names: Caffe's DataReader shares one reader among Data layers of the same
        # name and source, dealing records to them in turn, so a TEST net on the same LMDB would hang training
        suffix = "" if phase == "TRAIN" else "_test"
        text = layer % ("data" + suffix, "data", phase, transform % force, databases[0], batch_size)
        for k, path in enumerate(databases[1:]):
            name = ("label", "label_weight")[k]
            text += layer % (name + "_lmdb" + suffix, name + "_4d", phase, "", path, batch_size)
            text += ('layer { name: "%s" type: "Flatten" bottom: "%s_4d" top: "%s" include { phase: %s } }\n'
                     % (name + suffix, name, name, phase))
        blocks.append(text)
    return blocks[0] + TEST_NOTE + blocks[1]


# ---------------------------------------------------------------- command line

CONVERT_EXAMPLES = """examples:
  %(prog)s train.txt --out train_h5 --format hdf5 --num-classes 20 --new-height 256 --new-width 256
  %(prog)s train.txt --out train_lmdb --format lmdb --class-names names.txt --encoded --shuffle
  %(prog)s train.txt --out train_lmdb --format lmdb --num-classes 20 --resume
      continue an interrupted conversion (same options, same list)

List format: one image a line, 'path label label ...'; a label is a 0-based class index or (with
--class-names) a name, optionally with a weight as 17:0.5; '#' comments; a TAB ends a path with spaces.
"""


def add_parser(sub: "argparse._SubParsersAction[Any]") -> argparse.ArgumentParser:
    """Register the ``convert`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("convert", help="convert a multi-label image list to HDF5 or to image + label LMDBs",
                       description="Decode the images of a multi-label list (as Caffe's ImageData: OpenCV, BGR) "
                       "and write HDF5 files for HDF5Data, or an image LMDB and a label LMDB for two Data layers.",
                       epilog=CONVERT_EXAMPLES % {"prog": "softmax-multilabel convert"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("list", help="the list file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="hdf5 or lmdb")
    p.add_argument("--num-classes", type=int, help="C (or give --class-names)")
    p.add_argument("--class-names", help="file with one class name a line")
    p.add_argument("--root-folder", default="", help="prefix for relative image paths")
    p.add_argument("--new-height", type=int, default=0, help="resize to this height (0 keeps the size)")
    p.add_argument("--new-width", type=int, default=0, help="resize to this width (0 keeps the size)")
    p.add_argument("--gray", action="store_true", help="decode as greyscale (is_color false)")
    p.add_argument("--label-format", default="dense", choices=("dense", "indices"),
                   help="dense N x C multi-hot (default) or indices N x K padded with -1 (needs --max-labels)")
    p.add_argument("--max-labels", type=int, help="K, with --label-format indices")
    p.add_argument("--shuffle", action="store_true", help="write in a seeded random order")
    p.add_argument("--seed", type=int, default=0, help="seed of --shuffle (default 0)")
    p.add_argument("--encoded", action="store_true", help="LMDB: store encoded images, not raw pixels")
    p.add_argument("--hdf5-dtype", default="uint8", choices=("uint8", "float32"), help="HDF5 data type")
    p.add_argument("--max-file-mb", type=float, default=950.0, help="HDF5 files stay under this (default 950)")
    p.add_argument("--threads", type=int, default=2, help="decode threads (default 2)")
    p.add_argument("--batch-size", type=int, default=32, help="batch_size in the printed prototxt (default 32)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out missing files and images that cannot be decoded (each reported once, then "
                        "counted) instead of stopping")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted conversion into --out")
    again.add_argument("--overwrite", action="store_true",
                       help="replace a previous conversion in --out (never a folder holding other files)")
    return p


def run(args: argparse.Namespace) -> int:
    """The ``convert`` subcommand: convert, verify, print the prototxt layers; returns the exit status."""
    try:
        summary = _run(args)
    except MultilabelLossError as exc:
        message = str(exc)
        message = message[len(OWNER) + 2:] if message.startswith(OWNER + ": ") else message
        if isinstance(exc, ConvertInterrupted):
            sys.stderr.write("\n%s: %s\n" % (OWNER, message))
            return 130                      # 128 + SIGINT, as a shell reports a Ctrl-C
        sys.stderr.write("%s: error: %s\n" % (OWNER, message))
        return 2
    where = summary.get("files") or summary["databases"]
    print("converted %d images%s into %s (%s); verified counts: %s" % (
        summary["images"], " (resumed at %d)" % summary["resumed_from"] if summary["resumed_from"] else "",
        summary["out"], ", ".join(os.path.basename(p) for p in where),
        ", ".join("%s %d" % kv for kv in summary["counts"].items())))
    print("# layers for your train_val prototxt (TRAIN and TEST phases):")
    sys.stdout.write(summary["prototxt"])
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return convert(args.list, args.out, args.format, num_classes=args.num_classes, class_names=args.class_names,
                   root_folder=args.root_folder, new_height=args.new_height, new_width=args.new_width,
                   is_color=not args.gray, label_format=args.label_format, max_labels=args.max_labels,
                   shuffle=args.shuffle, seed=args.seed, encoded=args.encoded, hdf5_dtype=args.hdf5_dtype,
                   max_file_bytes=int(args.max_file_mb * 1e6), threads=args.threads, resume=args.resume,
                   overwrite=args.overwrite, batch_size=args.batch_size, skip_bad_images=args.skip_bad_images)
