"""Multi-label image lists, decoding and augmentation, and a prefetching batch reader (no Caffe import).

The core of :class:`softmax_multilabel_layer.data.MultilabelImageDataLayer` and of
``softmax-multilabel convert``.

**List format** (one image a line)::

    # comment lines and blank lines are skipped
    images/cat_dog.jpg 3 5
    images/dog.jpg 5:0.5            a label may carry a weight (the label value)
    images/beach.jpg beach sky      class names, with a class_names file
    my photos/a b.jpg<TAB>3 7       with a TAB, the path is everything before the first TAB
    images/empty.jpg                an image with no label

A label is a 0-based class index or, with ``class_names`` (one name a line; line
i is class i), a class name. ``17:0.5`` gives class 17 the value 0.5 (our losses
take real-valued labels); a bare label has the value 1.

**Decoding** is OpenCV's ``cv2.imread`` and ``cv2.resize`` (bilinear), as in
Caffe's ``ImageData``, so the pixels are BGR, like Caffe's. The transform is
Caffe's ``DataTransformer``: crop (random in TRAIN, centre in TEST), mirror
(random, TRAIN only), then ``(pixel - mean_value) * scale`` in float32.

**Order and randomness**: epoch ``e`` visits the images in the permutation
drawn from ``numpy.random.default_rng([seed, e])`` (the list order without
shuffle); with ``world_size`` W, rank r takes every W-th image of it from
position r, so the ranks read disjoint parts of every epoch. Every rank reads
ceil(N / W) images an epoch: when W does not divide N, the permutation is padded
by repeating its first images (at most W - 1), as PyTorch's ``DistributedSampler``
does by default, so ranks stepped side by side stay in the same epoch. Crop and mirror of
image ``i`` in epoch ``e`` come from ``default_rng([seed, e, i])``: batches do not
depend on the number of decode threads.

Example::

    >>> from softmax_multilabel_layer.params import ImageDataOptions
    >>> opts = ImageDataOptions(source="train.txt", num_classes=10, batch_size=8, crop_size=224)
    >>> reader = ImageBatchReader(opts, train=True)          # doctest: +SKIP
    >>> data, labels = reader.next_batch()[:2]                # 8x3x224x224 BGR, 8x10
    >>> reader.close()
"""
import atexit
import codecs
import difflib
import logging
import math
import os
import queue
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.params import IMAGE_DATA_OWNER, ImageDataOptions, MultilabelLossError

log = logging.getLogger(__name__)
MAX_REPORTED = 5           # missing files named in an error
MAX_REPLACEMENTS = 50      # tries to replace one bad image with skip_bad_images
UTF8 = "utf-8"             # the encoding of list files, class_names files and the path buffer
POLL_SECONDS = 0.5         # how often next_batch checks that the decode threads still run while it waits
JOIN_SECONDS = 5           # how long close waits for each decode thread to finish the image it is on


class ImageDecodeError(MultilabelLossError):
    """An image file that cannot be read or decoded, or whose size does not fit the batch."""


# ---------------------------------------------------------------- the list file

class _Segments(Sequence[Any]):
    """Item i is segment [offsets[i], offsets[i + 1]) of a flat store, made by :meth:`_item` on access."""

    def __init__(self, offsets: NDArray[np.int64]) -> None:
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        return self._item(int(self.offsets[i]), int(self.offsets[i + 1]))

    def _item(self, start: int, end: int) -> Any:
        raise NotImplementedError


class _Rows(_Segments):
    """Row i of a flat array cut at ``offsets`` (a view, no copy): the labels or values of image i."""

    def __init__(self, flat: NDArray[Any], offsets: NDArray[np.int64]) -> None:
        super().__init__(offsets)
        self.flat = flat

    def _item(self, start: int, end: int) -> Any:
        return self.flat[start:end]


class _Paths(_Segments):
    """Path i of one UTF-8 byte buffer cut at ``offsets``, joined to ``root_folder``: str objects made on access."""

    def __init__(self, buffer: bytes, offsets: NDArray[np.int64], root_folder: str) -> None:
        super().__init__(offsets)
        self.buffer, self.root_folder = buffer, root_folder

    def _item(self, start: int, end: int) -> Any:
        return os.path.join(self.root_folder, self.buffer[start:end].decode(UTF8))


class ImageList(object):
    """A parsed list file, stored compactly: one byte buffer of paths with offsets, labels in flat arrays.

    A Python list of str paths and one small array per line cost some 460 bytes a line; this costs the path's
    bytes plus 8 (path offset) + 8 (line number) + 8 (label offset) + 8 per label (int32 index, float32 value),
    like Caffe's ``ImageData``, which keeps a ``vector<pair<string, int>>``.

    Attributes:
        source: the list file. paths[i]: image i's path (root_folder joined; a sequence view).
        line_numbers[i]: its 1-based line in ``source`` (int64 array). labels[i] / values[i]: int32 class
        indices and float32 values of image i (array views). num_classes: C. class_names: the names or None.
    """

    def __init__(self, source: str, root_folder: str, path_buffer: bytes, path_offsets: NDArray[np.int64],
                 line_numbers: NDArray[np.int64], label_offsets: NDArray[np.int64], label_indices: NDArray[np.int32],
                 label_values: NDArray[np.float32], num_classes: int, class_names: list[str] | None) -> None:
        self.source, self.root_folder, self.num_classes, self.class_names = source, root_folder, num_classes, \
            class_names
        self.path_buffer, self.path_offsets, self.line_numbers = path_buffer, path_offsets, line_numbers
        self.label_offsets, self.label_indices, self.label_values = label_offsets, label_indices, label_values
        self.paths = _Paths(path_buffer, path_offsets, root_folder)
        self.labels = _Rows(label_indices, label_offsets)
        self.values = _Rows(label_values, label_offsets)

    def __len__(self) -> int:
        return len(self.line_numbers)

    def where(self, i: int) -> str:
        """``"source:line"`` of image i, for messages."""
        return "%s:%d" % (self.source, self.line_numbers[i])

    def without(self, indices: Sequence[int]) -> "ImageList":
        """The list without the images ``indices``."""
        keep = np.isin(np.arange(len(self)), indices, invert=True)
        kept = np.flatnonzero(keep)
        starts, ends = self.path_offsets[:-1][kept], self.path_offsets[1:][kept]
        pairs = zip(starts.tolist(), ends.tolist(), strict=True)  # pragma: no mutate (equal lengths)
        buffer = b"".join(self.path_buffer[a:b] for a, b in pairs)
        label_counts = np.diff(self.label_offsets)[kept]
        rows = np.repeat(keep, np.diff(self.label_offsets))
        return ImageList(self.source, self.root_folder, buffer, _offsets(ends - starts), self.line_numbers[kept],
                         _offsets(label_counts), self.label_indices[rows], self.label_values[rows], self.num_classes,
                         self.class_names)


def _offsets(lengths: ArrayLike) -> NDArray[np.int64]:
    """[0, l0, l0 + l1, ...]: the cut points of consecutive segments of these lengths."""
    out = np.zeros(len(np.asarray(lengths)) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def decode_utf8(data: bytes, path: str, what: str, owner: str = IMAGE_DATA_OWNER, first_line: int = 1) -> str:
    """``data`` (the file's text from line ``first_line`` on) as UTF-8, without the byte-order mark that may
    open the file (line 1); an error naming the line and column that are not UTF-8.

    Example::

        >>> decode_utf8(b"\\xef\\xbb\\xbfa.jpg 1\\n", "list.txt", "list file")
        'a.jpg 1\\n'
    """
    if first_line == 1:
        data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode(UTF8)
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + first_line
        column = exc.start - before.rfind(b"\n")
        raise MultilabelLossError("%s: %s %r is not UTF-8: line %d, column %d has byte 0x%02x (%s); save the file "
                                  "as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
                                  % (owner, what, path, line, column, data[exc.start], exc.reason)) from None


def read_class_names(path: str, owner: str = IMAGE_DATA_OWNER) -> list[str]:
    """Class names from a file, one a line (line i is class i); blank lines and duplicates are errors."""
    try:
        with open(path, "rb") as f:
            lines = decode_utf8(f.read(), path, "class_names file", owner).splitlines()
    except OSError as exc:
        raise MultilabelLossError("%s: class_names file %r cannot be read: %s" % (owner, path, exc.strerror)) from None
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise MultilabelLossError("%s: %s:%d: empty class name; expected one class name a line (line i is "
                                      "class i - 1)" % (owner, path, number))
        if name in seen:
            raise MultilabelLossError("%s: %s:%d: class name %r repeats line %d" % (owner, path, number, name,
                                                                                 seen[name]))
        seen[name] = number
        names.append(name)
    if not names:
        raise MultilabelLossError("%s: class_names file %r has no names" % (owner, path))
    return names


def list_image_paths(source: str, root_folder: str = "", owner: str = "--list") -> list[str]:
    """The image paths of a list file (format above), labels ignored, ``root_folder`` joined to relative paths.

    The file is read as :func:`parse_image_list` reads it (a byte-order mark is skipped; a file that is not
    UTF-8 is refused, naming the line); an empty list gives ``[]``. ``owner`` names the caller in messages
    (``predict --list``).
    """
    paths: list[str] = []
    for text, first_line in _list_chunks(source, owner):
        paths += _split_lines(text, first_line, source, owner)[0]
    return [os.path.join(root_folder, path) for path in paths]


_INDEX = re.compile(r"[+-]?[0-9]+")


def _parse_label(token: str, name_index: dict[str, int] | None, num_classes: int, where: str,
                 owner: str) -> tuple[int, float]:
    label, value = token, 1.0
    head, sep, tail = token.rpartition(":")
    if sep:
        try:
            value = float(tail)
            label = head
        except ValueError:
            if name_index is None:
                raise MultilabelLossError("%s: %s: bad label %r: the weight after ':' must be a number, e.g. "
                                          "17:0.5" % (owner, where, token)) from None
            # A name with a ':' in it (class names may have one): the whole token is the name, value 1.
        if not math.isfinite(value) or value < 0:
            raise MultilabelLossError("%s: %s: label %r has weight %r; expected a finite number >= 0"
                                      % (owner, where, token, value))
    index = int(label) if _INDEX.fullmatch(label) else None     # not int(): it takes "1_0" and other digits
    if index is None:
        if name_index is None:
            raise MultilabelLossError(
                "%s: %s: bad label %r: expected a 0-based class index (an integer), optionally with a weight "
                "as index:weight (e.g. 17:0.5); class names need the class_names option" % (owner, where, token))
        if label not in name_index:
            close = difflib.get_close_matches(label, list(name_index))
            raise MultilabelLossError("%s: %s: unknown class name %r (not among the %d class_names)%s"
                                      % (owner, where, label, len(name_index),
                                         "; did you mean %r?" % close[0] if close else ""))
        index = name_index[label]
    elif not 0 <= index < num_classes:
        raise MultilabelLossError("%s: %s: label %d is out of range: expected a class index in [0, %d) "
                                  "(num_classes %d; indices are 0-based)" % (owner, where, index, num_classes,
                                                                             num_classes))
    return index, value


def parse_image_list(source: str, num_classes: int | None = None, class_names: str | None = None,
                     root_folder: str = "", max_labels: int | None = None,
                     owner: str = IMAGE_DATA_OWNER) -> ImageList:
    """Parse and validate a list file (format in the module docstring) into a compact :class:`ImageList`.

    Args:
        source: the list file (UTF-8; a byte-order mark is skipped).
        num_classes: C; optional with ``class_names`` (then C = number of names, and a given C must match).
        class_names: file with one class name a line, or None.
        root_folder: prefix joined to relative paths (``os.path.join``; absolute paths are kept).
        max_labels: with the indices label format, the most labels a line may have.

    Returns:
        An :class:`ImageList`.

    The file is read and parsed CHUNK_BYTES at a time: a chunk whose labels are all plain indices (or all class names)
    is converted at once by numpy; any other chunk, and any error, goes line by line, so the messages are the
    same. Raises :class:`MultilabelLossError` naming the file and line: missing or empty list, not UTF-8, bad
    token, index out of range, unknown class name, repeated class on one line, more than ``max_labels`` labels.
    """
    names = read_class_names(class_names, owner) if class_names else None
    if names is not None:
        if num_classes is not None and num_classes != len(names):
            raise MultilabelLossError("%s: num_classes is %d but class_names file %r has %d names"
                                      % (owner, num_classes, class_names, len(names)))
        num_classes = len(names)
    if num_classes is None:
        raise MultilabelLossError("%s: num_classes is required (or a class_names file)" % owner)
    name_index = {n: i for i, n in enumerate(names)} if names else None
    parser = _ListParser(source, int(num_classes), name_index, max_labels, owner)
    for text, line in _list_chunks(source, owner):
        parser.chunk(text, line)
    if not parser.counts:
        lines = line - 1 + bool(text)       # the last chunk is the text after the last newline
        raise MultilabelLossError("%s: list file %r has no images (%d lines, all blank or comments); expected "
                                  "lines 'path label label ...'" % (owner, source, lines))
    result = parser.result(root_folder, names)
    del parser
    _return_free_memory()
    return result


def _list_chunks(source: str, owner: str) -> Iterator[tuple[str, int]]:
    """The text of a list file CHUNK_BYTES at a time, cut after a newline, with the number of its first line:
    never the whole file in memory. The last chunk is the text after the last newline (often empty).

    Raises :class:`MultilabelLossError` for a missing or unreadable file, or one that is not UTF-8 (naming the
    line; a byte-order mark opening the file is skipped).
    """
    line = 1
    try:
        with open(source, "rb") as f:
            tail = b""
            while True:
                block = f.read(CHUNK_BYTES)
                data = tail + block
                cut = data.rfind(b"\n") + 1 if block else len(data)
                data, tail = data[:cut], data[cut:]
                yield decode_utf8(data, source, "list file", owner, first_line=line), line
                line += data.count(b"\n")
                if not block:
                    return
    except FileNotFoundError:
        raise MultilabelLossError("%s: list file %r not found (working directory %s)"
                                  % (owner, source, os.getcwd())) from None
    except OSError as exc:
        raise MultilabelLossError("%s: list file %r cannot be read: %s" % (owner, source, exc)) from None


def _return_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Parsing frees some 100 bytes a line of short-lived strings and chunk arrays, but a later small allocation
    at the top of the heap keeps glibc from returning them: a million-line list left 160 bytes a line of
    resident memory instead of the 71 its arrays take.
    """
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)  # pragma: no mutate (memory only; measured by make bench's image_list)
    except (OSError, AttributeError):
        pass


CHUNK_BYTES = 1 << 20           # list bytes read and parsed at a time (1 MB)
_PLAIN_INDICES = re.compile(r"[0-9]{1,9}(?: [0-9]{1,9})*")      # converted at once by numpy


def _split_lines(text: str, first_line: int, source: str, owner: str
                 ) -> tuple[list[str], list[int], list[int], list[str]]:
    """The image lines of a chunk of a list (not blank, not comments): their paths, line numbers, numbers of
    label tokens, and the label tokens one after the other."""
    paths: list[str] = []
    numbers: list[int] = []
    counts: list[int] = []
    tokens: list[str] = []
    number = first_line - 1
    for raw in text.split("\n"):
        number += 1
        line = raw.rstrip()
        if "\t" in line:                          # with a TAB, the path is everything before the first one
            path, _, rest = line.partition("\t")
            path, parts = path.strip(), rest.split()
            if path.startswith("#"):
                continue
            if not path:
                raise MultilabelLossError("%s: %s:%d: empty image path before the TAB" % (owner, source, number))
        else:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            path = parts.pop(0)
        paths.append(path)
        numbers.append(number)
        counts.append(len(parts))
        tokens += parts
    return paths, numbers, counts, tokens


class _ListParser(object):
    """Accumulates the compact arrays of a list, chunk by chunk (see :func:`parse_image_list`)."""

    def __init__(self, source: str, num_classes: int, name_index: dict[str, int] | None, max_labels: int | None,
                 owner: str) -> None:
        self.source, self.num_classes, self.name_index = source, num_classes, name_index
        self.max_labels, self.owner = max_labels, owner
        self.buffers: list[bytes] = []
        self.path_lengths: list[NDArray[np.int64]] = []
        self.numbers: list[NDArray[np.int64]] = []
        self.counts: list[NDArray[np.int64]] = []
        self.indices: list[NDArray[np.int32]] = []
        self.values: list[NDArray[np.float32]] = []

    def chunk(self, text: str, first_line: int) -> None:
        paths, numbers, counts, tokens = _split_lines(text, first_line, self.source, self.owner)
        if not paths:
            return
        idx, val = self._labels(tokens, numbers, counts)
        joined = "".join(paths).encode(UTF8)
        lengths = np.array(list(map(len, paths)))              # characters: bytes unless a path is not ASCII
        if lengths.sum() != len(joined):
            lengths = np.array([len(p.encode(UTF8)) for p in paths])
        self.buffers.append(joined)
        self.path_lengths.append(lengths)
        self.numbers.append(np.array(numbers))
        self.counts.append(np.array(counts))
        self.indices.append(idx)
        self.values.append(val)

    def _labels(self, tokens: list[str], numbers: list[int],
                counts: list[int]) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The chunk's labels: at once when plain (indices, or class names), else line by line; then checked."""
        idx: NDArray[np.int64] | None = None
        if self.name_index is None:
            joined = " ".join(tokens)
            if _PLAIN_INDICES.fullmatch(joined) or not joined:
                idx = np.fromstring(joined, np.int64, sep=" ")
        else:
            found = [self.name_index.get(t) for t in tokens]
            if None not in found:
                idx = np.array(found, np.int64)
        if idx is not None:
            rows = np.repeat(np.arange(len(counts)), counts)
            bad = rows[idx >= self.num_classes]
            if len(bad) == 0:                  # a class twice on a line: a (line, class) cell met twice
                cells = np.ravel_multi_index((rows, idx), (len(counts), self.num_classes))
                ordered = np.sort(cells)
                bad = rows[np.isin(cells, ordered[1:][ordered[1:] == ordered[:-1]])]
            too_many = self.max_labels is not None and max(counts) > self.max_labels
            if len(bad) == 0 and not too_many:
                return idx.astype(np.int32), np.ones(len(idx), np.float32)
        # line by line: the messages of _line_labels
        out_idx = np.empty(len(tokens), np.int32)
        out_val = np.empty(len(tokens), np.float32)
        position = 0
        for j, count in enumerate(counts):
            number = numbers[j]
            line_tokens = tokens[position:position + count]
            out_idx[position:position + count], out_val[position:position + count] = _line_labels(
                line_tokens, self.name_index, self.num_classes, "%s:%d" % (self.source, number), self.owner,
                self.max_labels)
            position += count
        return out_idx, out_val

    def result(self, root_folder: str, names: list[str] | None) -> ImageList:
        counts = np.concatenate(self.counts)
        return ImageList(self.source, root_folder, b"".join(self.buffers), _offsets(np.concatenate(self.path_lengths)),
                         np.concatenate(self.numbers), _offsets(counts), np.concatenate(self.indices),
                         np.concatenate(self.values), self.num_classes, names)


def _line_labels(tokens: list[str], name_index: dict[str, int] | None, num_classes: int, where: str, owner: str,
                 max_labels: int | None) -> tuple[list[int], list[float]]:
    """The labels of one line, checked token by token (the error messages)."""
    idx: list[int] = []
    val: list[float] = []
    for token in tokens:
        index, value = _parse_label(token, name_index, num_classes, where, owner)
        if index in idx:
            raise MultilabelLossError("%s: %s: class %s appears twice on the line; expected distinct classes"
                                      % (owner, where, token))
        idx.append(index)
        val.append(value)
    if max_labels is not None and len(tokens) > max_labels:
        raise MultilabelLossError("%s: %s: %d labels but max_labels is %d" % (owner, where, len(tokens), max_labels))
    return idx, val


def skip_option(owner: str) -> str:
    """How the user of ``owner`` (the layer or ``convert``) turns on skipping bad images."""
    return '"skip_bad_images": true' if owner == IMAGE_DATA_OWNER else "--skip-bad-images"


def check_files_exist(image_list: ImageList, owner: str = IMAGE_DATA_OWNER, root_folder: str = "",
                      skip: bool = False) -> ImageList:
    """The list without images whose files do not exist: an error naming the count and the first few, or with
    ``skip`` one warning naming every such line and the list without them.

    Args:
        image_list: a parsed list. owner: the layer or command, for messages. root_folder: for the message.
        skip: drop missing files (``skip_bad_images``) instead of raising.

    Returns:
        ``image_list`` itself when every file exists, else (with ``skip``) a new list of the existing ones.
    """
    missing = [i for i, p in enumerate(image_list.paths) if not os.path.isfile(p)]
    if not missing:
        return image_list
    if skip and len(missing) < len(image_list.paths):
        log.warning("%s: skip_bad_images: left out %d of %d images listed in %r whose files do not exist: %s",
                    owner, len(missing), len(image_list.paths), image_list.source,
                    ", ".join("line %d: %r" % (image_list.line_numbers[i], image_list.paths[i]) for i in missing))
        return image_list.without(missing)
    first = ", ".join("line %d: %r" % (image_list.line_numbers[i], image_list.paths[i])
                      for i in missing[:MAX_REPORTED])
    relative = not os.path.isabs(image_list.paths[missing[0]])
    raise MultilabelLossError("%s: %d of %d image files listed in %r do not exist%s: %s%s%s%s"
                              % (owner, len(missing), len(image_list.paths), image_list.source,
                                 " (root_folder %r)" % root_folder if root_folder else "", first,
                                 ", ..." if len(missing) > MAX_REPORTED else "",
                                 "; relative paths are read from the working directory %s%s" % (
                                     os.getcwd(), "" if root_folder else ", set root_folder to the images' "
                                     "folder") if relative else "",
                                 "; or set %s to leave them out" % skip_option(owner)
                                 if len(missing) < len(image_list.paths) else ""))


def encode_labels(image_list: ImageList, indices: Sequence[int], out: NDArray[np.float32], label_format: str,
                  weights_out: NDArray[np.float32] | None = None) -> None:
    """Write the labels of images ``indices`` into ``out`` (N x C dense, or N x K indices padded with -1)."""
    if label_format == "dense":
        out[...] = 0
        for row, i in enumerate(indices):
            out[row, image_list.labels[i]] = image_list.values[i]
        return
    out[...] = -1
    if weights_out is not None:
        weights_out[...] = 0
    for row, i in enumerate(indices):
        k = len(image_list.labels[i])
        out[row, :k] = image_list.labels[i]
        if weights_out is not None:
            weights_out[row, :k] = image_list.values[i]


# ---------------------------------------------------------------- decoding and augmentation

def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise MultilabelLossError("%s: needs OpenCV's Python module cv2 to decode images (%s); install it with "
                                  "`pip install 'opencv-python-headless<4.12'` (make setup does)"
                                  % (IMAGE_DATA_OWNER, exc)) from None
    return cv2


def load_image(path: str, is_color: bool = True, new_height: int = 0, new_width: int = 0,
               where: str | None = None, owner: str = IMAGE_DATA_OWNER) -> NDArray[np.uint8]:
    """Decode and optionally resize one image as Caffe's ``ReadImageToCVMat``: uint8 H x W x C, BGR.

    Args:
        path: the file. is_color: 3 channels BGR (else 1, grey). new_height, new_width: resize (bilinear) when
            both are > 0. where: ``"list:line"`` for messages. owner: the layer or command, for messages.

    Raises :class:`ImageDecodeError` naming ``owner`` and the file when it cannot be decoded.
    """
    cv2 = _cv2()
    img = cv2.imread(path, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ImageDecodeError("%s: cannot read or decode image %r%s: missing, unreadable or not an image "
                               "format OpenCV knows" % (owner, path, " (%s)" % where if where else ""))
    if new_height and new_width:            # as Caffe, even to the same size (the identity)
        img = cv2.resize(img, (new_width, new_height))
    return img if img.ndim == 3 else img[:, :, None]


class Transform(object):
    """Caffe's DataTransformer on one H x W x C uint8 image, written into a C x h x w float32 array.

    out[c] = (float32(crop(img)[:, :, c]) - mean[c]) * scale, in float32 as Caffe computes it. The crop
    is random in TRAIN (offsets drawn from ``rng``) and centred otherwise; the mirror (a coin from ``rng``)
    is TRAIN only.

    Args:
        channels: C (3 BGR, or 1). crop_size: 0 = no crop. mirror: random horizontal flips in TRAIN.
        mean_value: one value or one per channel (None = 0). scale: multiplier. train: the phase.

    Example::

        >>> t = Transform(3, crop_size=224, mirror=True, mean_value=[104, 117, 123])
        >>> out = np.empty((3, 224, 224), np.float32)
        >>> t(load_image("cat.jpg", new_height=256, new_width=256), out, np.random.default_rng(0))  # doctest: +SKIP
    """

    def __init__(self, channels: int, crop_size: int = 0, mirror: bool = False,
                 mean_value: ArrayLike | None = None, scale: float = 1.0, train: bool = True) -> None:
        self.crop_size, self.mirror, self.train = crop_size, bool(mirror) and train, train
        mean = np.zeros(channels, np.float32) if mean_value is None else np.asarray(mean_value, np.float32)
        self.mean = np.broadcast_to(mean, (channels,)).reshape(channels, 1, 1).copy()
        self.scale = np.float32(scale)

    def __call__(self, img: NDArray[np.uint8], out: NDArray[np.float32],
                 rng: np.random.Generator) -> NDArray[np.float32]:
        h, w = img.shape[:2]
        c = self.crop_size
        if c:
            if self.train:
                y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            else:
                y, x = (h - c) // 2, (w - c) // 2
            img = img[y:y + c, x:x + c]
        if self.mirror and rng.integers(2):
            img = img[:, ::-1]
        # Per channel: uint8 plane -> float32, minus the mean, times the scale, as Caffe's float arithmetic.
        for c, plane in enumerate(_cv2().split(img)):
            out[c] = plane
            if self.mean[c, 0, 0] != 0:
                out[c] -= self.mean[c, 0, 0]
            if self.scale != 1:
                out[c] *= self.scale
        return out


# ---------------------------------------------------------------- order: epochs and shards

class Schedule(object):
    """Which image fills each batch slot: seeded epoch permutations, split across ranks in equal shards.

    Every rank reads L = ceil(N / W) images per epoch, so ranks stepped side by side stay in the same epoch.
    As PyTorch's ``DistributedSampler`` (its default, ``drop_last=False``), the epoch's permutation is padded
    to L * W by repeating its first L * W - N images (at most W - 1), then rank r takes every W-th image from
    position r: within an epoch the ranks' images are disjoint but for those padded repeats, and together
    they cover every image. Position p of rank r's stream is ``order(e)[p % L]`` of epoch ``e = p // L``.

    Args:
        num_images: N. batch_size: samples a batch. shuffle: a seeded permutation per epoch (else list order).
        seed: the seed. rank, world_size: the shard (r of W).

    Example::

        >>> s = Schedule(11, 3, shuffle=False, rank=1, world_size=2)
        >>> s.shard_size, s.epoch_order(0).tolist()
        (6, [1, 3, 5, 7, 9, 0])
    """

    def __init__(self, num_images: int, batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, owner: str = IMAGE_DATA_OWNER) -> None:
        if num_images < world_size:
            raise MultilabelLossError("%s: %d images cannot be shared among world_size %d ranks"
                                      % (owner, num_images, world_size))
        self.num_images, self.batch_size, self.shuffle, self.seed = num_images, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.shard_size = -(-num_images // world_size)           # the same on every rank
        self.padding = self.shard_size * world_size - num_images  # repeated images per epoch (< world_size)
        self._cache: dict[int, NDArray[np.intp]] = {}
        self._lock = threading.Lock()          # workers ask for orders too (replacing a bad image)

    def epoch_order(self, epoch: int) -> NDArray[np.intp]:
        """The images rank r reads in ``epoch``, in order (int64 array of ``shard_size``)."""
        with self._lock:
            order = self._cache.get(epoch)  # pragma: no mutate (the cache saves time only)
            if order is None:
                if self.shuffle:
                    full = np.random.default_rng([self.seed, epoch]).permutation(self.num_images)
                else:
                    full = np.arange(self.num_images)
                if self.padding:
                    full = np.concatenate([full, full[:self.padding]])
                order = full[self.rank::self.world_size]
                if len(self._cache) > 4:  # pragma: no mutate (the cache saves time only)
                    self._cache.pop(min(self._cache))  # pragma: no mutate (the cache saves time only)
                self._cache[epoch] = order  # pragma: no mutate (the cache saves time only)
            return order

    def batch(self, k: int) -> list[tuple[int, int]]:
        """[(epoch, image index)] for batch k of this rank."""
        out: list[tuple[int, int]] = []
        for p in range(k * self.batch_size, (k + 1) * self.batch_size):
            epoch, j = divmod(p, self.shard_size)
            out.append((epoch, int(self.epoch_order(epoch)[j])))
        return out

    def sample_rng(self, epoch: int, image: int, attempt: int = 0) -> np.random.Generator:
        """The generator of one sample's augmentation: depends on (seed, epoch, image), never on threads."""
        return np.random.default_rng([self.seed, epoch, image, attempt])


# ---------------------------------------------------------------- the prefetching reader

_LIVE: "weakref.WeakSet[ImageBatchReader]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:          # stop decode threads before the interpreter finalizes
    for reader in list(_LIVE):
        reader.close()


# One batch's arrays: data (N x C x H x W), labels (N x C or N x K), label weights (N x K; None unless indices).
Buffers = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None]


class _Batch(object):
    __slots__ = ("buffers", "samples", "bad", "remaining", "done", "error", "lock")

    def __init__(self, buffers: Buffers, samples: list[tuple[int, int]]) -> None:
        self.buffers, self.samples = buffers, samples
        self.bad: dict[int, list[int]] = {}      # slot -> the bad images met filling it (skip_bad_images)
        self.remaining = len(samples)
        self.done = threading.Event()
        self.error: Exception | None = None
        self.lock = threading.Lock()


class ImageBatchReader(object):
    """Decode and augment batches in background threads; :meth:`next_batch` returns a ready one.

    Args:
        options: an :class:`~softmax_multilabel_layer.params.ImageDataOptions`.
        train: TRAIN phase (random crop and mirror; shuffle unless ``options.shuffle`` is false).
        rank, world_size: the shard to read (default: ``options.rank`` / ``world_size``, else 0 and 1).
        check_files: check at start that every listed file exists.

    Shape:
        :attr:`data_shape` is (N, C, H, W), C = 3 (BGR) or 1; :attr:`label_shape` is (N, C)
        dense or (N, K) indices.

    At most ``options.prefetch`` batches are held (decoded or being decoded), each
    in a buffer that :meth:`next_batch` hands back to the workers once the caller
    has copied it; the caller's copy (Caffe's top blob) is the one more.
    """

    def __init__(self, options: ImageDataOptions, train: bool = True, rank: int | None = None,
                 world_size: int | None = None, check_files: bool = True) -> None:
        if not isinstance(options, ImageDataOptions):
            raise TypeError("options must be an ImageDataOptions, got %r" % type(options).__name__)
        o = self.options = options
        self.owner = o.owner
        self.train = train
        assert o.source is not None            # ImageDataOptions requires it
        self.images = parse_image_list(o.source, o.num_classes, o.class_names, o.root_folder, o.max_labels, o.owner)
        if check_files:
            self.images = check_files_exist(self.images, o.owner, o.root_folder, o.skip_bad_images)
        rank = o.rank if rank is None else rank
        world_size = o.world_size if world_size is None else world_size
        self.rank, self.world_size = rank or 0, world_size or 1
        if not 0 <= self.rank < self.world_size:
            raise MultilabelLossError("%s: rank must be in [0, world_size) = [0, %d), got %d"
                                      % (self.owner, self.world_size, self.rank))
        shuffle = train if o.shuffle is None else o.shuffle
        self.schedule = Schedule(len(self.images.paths), o.batch_size, shuffle, o.seed, self.rank, self.world_size,
                                 o.owner)
        channels = 3 if o.is_color else 1
        self.bad_images: dict[int, str] = {}       # image -> its error; never decoded again (decode threads)
        if o.crop_size:
            height = width = o.crop_size
        elif o.new_height:
            height, width = o.new_height, o.new_width
        else:                      # like Caffe: the first image (of the first batch) sets the size
            height, width = self._first_image_size()
        self.image_shape = (height, width)
        self.data_shape = (o.batch_size, channels, height, width)
        self.label_shape = (o.batch_size, o.label_width(self.images.num_classes))
        self.transform = Transform(channels, o.crop_size, o.mirror, o.mean_value, o.scale, train)
        self.skipped: dict[int, int] = {}          # epoch -> samples whose bad image was replaced (consumer side)
        self._reported: set[int] = set()           # bad images reported to the log (consumer side)
        self._epoch_to_log = 0                     # the first epoch whose count line is not written yet
        self._skip_lock = threading.Lock()
        self._next_k = 0
        self._inflight: list[_Batch] = []
        self._pending_return: Buffers | None = None
        self._tasks: queue.Queue[tuple[_Batch, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=_worker, args=(weakref.proxy(self), self._tasks, self._stop),
                                          name="MultilabelImageData-%d" % i, daemon=True) for i in range(o.threads)]
        for t in self._threads:
            t.start()
        _LIVE.add(self)
        for _ in range(o.prefetch):
            self._submit(self._new_buffers())

    # -- buffers and tasks
    def _new_buffers(self) -> Buffers:
        label = np.zeros(self.label_shape, np.float32)
        weight = np.zeros(self.label_shape, np.float32) if self.options.label_format == "indices" else None
        return np.empty(self.data_shape, np.float32), label, weight

    def _submit(self, buffers: Buffers) -> None:
        k = self._next_k
        self._next_k += 1
        batch = _Batch(buffers, self.schedule.batch(k))
        self._inflight.append(batch)
        for i in range(len(batch.samples)):
            self._tasks.put((batch, i))

    def _first_image_size(self) -> tuple[int, int]:
        """(H, W) of the first image of the first batch; with skip_bad_images, of the first good one."""
        o = self.options
        for position in range(self.schedule.shard_size):
            first = int(self.schedule.epoch_order(0)[position])
            try:
                height, width = load_image(self.images.paths[first], where=self.images.where(first),
                                           owner=self.owner).shape[:2]
                return height, width
            except ImageDecodeError as exc:
                if not o.skip_bad_images:
                    raise self._with_hint(exc) from None
                self.bad_images[first] = str(exc)
        raise MultilabelLossError("%s: no image of the first epoch of %s can be decoded (skip_bad_images)"
                                  % (self.owner, self.images.source))

    def _with_hint(self, exc: ImageDecodeError) -> ImageDecodeError:
        return ImageDecodeError("%s; set %s to replace bad images by others" % (exc, skip_option(self.owner)))

    def _fill(self, batch: _Batch, i: int) -> None:
        """Decode and transform one sample into its slot (runs in a worker thread).

        With skip_bad_images, a bad image (known bad, or failing now) is replaced by another image of the epoch
        drawn from (seed, epoch, bad image, attempt), never decoded again, and recorded in ``batch.bad``.
        """
        o = self.options
        epoch, image = batch.samples[i]
        attempt = 0
        while True:
            with self._skip_lock:
                known = self.bad_images.get(image)
            if known is None:
                try:
                    self._load_into(image, epoch, attempt, batch.buffers[0][i])
                    return
                except ImageDecodeError as exc:
                    if not o.skip_bad_images:
                        raise self._with_hint(exc) from None
                    with self._skip_lock:
                        self.bad_images.setdefault(image, str(exc))
                    known = str(exc)
            batch.bad.setdefault(i, []).append(image)
            attempt += 1
            if attempt > MAX_REPLACEMENTS:
                raise ImageDecodeError("%s: %d bad images in a row while replacing one (skip_bad_images); "
                                       "last: %s" % (self.owner, attempt, known))
            order = self.schedule.epoch_order(epoch)
            image = int(order[self.schedule.sample_rng(epoch, image, attempt).integers(len(order))])
            batch.samples[i] = (epoch, image)

    def _load_into(self, image: int, epoch: int, attempt: int, out: NDArray[np.float32]) -> None:
        o = self.options
        where = self.images.where(image)
        img = load_image(self.images.paths[image], o.is_color, o.new_height, o.new_width, where, self.owner)
        h, w = img.shape[:2]
        if o.crop_size:
            if h < o.crop_size or w < o.crop_size:
                raise ImageDecodeError("%s: image %r (%s) is %dx%d, smaller than crop_size %d; resize it with "
                                       "new_height and new_width" % (self.owner, self.images.paths[image], where,
                                                                     h, w, o.crop_size))
        elif (h, w) != self.image_shape:
            raise ImageDecodeError("%s: image %r (%s) is %dx%d but the batch is %dx%d (set by the first image); "
                                   "images of different sizes need new_height/new_width or crop_size"
                                   % ((self.owner, self.images.paths[image], where, h, w) + self.image_shape))
        self.transform(img, out, self.schedule.sample_rng(epoch, image, attempt))

    # -- the consumer side
    def next_batch(self) -> Buffers:
        """Wait for the next batch; returns (data, labels, label_weights or None), valid until the next call.

        Raises the first error of the batch (e.g. :class:`ImageDecodeError`).
        """
        if self._stop.is_set():
            raise MultilabelLossError("%s: the reader is closed" % self.owner)
        if self._pending_return is not None:
            self._submit(self._pending_return)
            self._pending_return = None
        batch = self._inflight.pop(0)
        while not batch.done.wait(POLL_SECONDS):
            if not any(t.is_alive() for t in self._threads):
                raise MultilabelLossError("%s: the decode threads have stopped" % self.owner)
        if batch.error is not None:
            self._inflight.insert(0, batch)
            raise batch.error
        encode_labels(self.images, [s[1] for s in batch.samples], batch.buffers[1], self.options.label_format,
                      batch.buffers[2])
        self._report_bad(batch)
        self._pending_return = batch.buffers
        return batch.buffers

    def _report_bad(self, batch: _Batch) -> None:
        """skip_bad_images: log each bad image once (in list order within a batch), then one count per epoch.

        Runs in the consumer's thread, batch after batch, so the log is the same whatever the decode threads do.
        """
        if not self.options.skip_bad_images:
            return
        new: set[int] = set()
        for slot, bad in batch.bad.items():
            epoch = batch.samples[slot][0]
            self.skipped[epoch] = self.skipped.get(epoch, 0) + 1
            new.update(b for b in bad if b not in self._reported)
        for image in sorted(new):
            self._reported.add(image)
            with self._skip_lock:
                message = self.bad_images[image]
            message = message.removeprefix(self.owner + ": ")
            log.warning("%s: skip_bad_images: %s; it is replaced by other images of the epoch from now on "
                        "(reported once)", self.owner, message)
        while self._epoch_to_log < batch.samples[-1][0]:          # the epochs before the last sample's are over
            count = self.skipped.get(self._epoch_to_log)
            if count:
                log.warning("%s: epoch %d of %s (rank %d): %d sample(s) of bad images replaced by other images",
                            self.owner, self._epoch_to_log, self.images.source, self.rank, count)
            self._epoch_to_log += 1

    def close(self) -> None:
        """Stop the decode threads (idempotent); they finish the image they are on and exit."""
        if self._stop.is_set():
            return
        self._stop.set()
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=JOIN_SECONDS)
        _LIVE.discard(self)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _worker(reader: ImageBatchReader, tasks: "queue.Queue[tuple[_Batch, int] | None]",
            stop: threading.Event) -> None:
    """Decode thread: take (batch, slot) tasks until stopped. Holds the reader only through a weak proxy."""
    while True:
        task = tasks.get()
        if task is None or stop.is_set():
            return
        batch, i = task
        try:
            if batch.error is None:
                reader._fill(batch, i)
        except ReferenceError:     # the reader was collected
            return
        except Exception as exc:   # reported by next_batch, in the consumer's thread
            with batch.lock:
                if batch.error is None:
                    batch.error = exc
        with batch.lock:
            batch.remaining -= 1
            if batch.remaining == 0:
                batch.done.set()
