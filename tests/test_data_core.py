"""The image-data core without Caffe: list parsing and its errors, transform, epochs, shards, determinism, prefetch."""
import logging
import os
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_files import decoded_ids, id_image, id_list, label_sets, pattern_image, write_images, write_list

from softmax_multilabel_layer.data import image_data
from softmax_multilabel_layer.data.image_data import (
    ImageBatchReader,
    ImageDecodeError,
    Schedule,
    Transform,
    load_image,
    parse_image_list,
)
from softmax_multilabel_layer.params import ImageDataOptions, MultilabelLossError

OWNER = "MultilabelImageDataLayer"


def options(source, **kw):
    kw.setdefault("num_classes", 5)
    kw.setdefault("batch_size", 4)
    return ImageDataOptions(owner=OWNER, source=str(source), **kw)


def read_batches(opts, count, train=True, **kw):
    reader = ImageBatchReader(opts, train=train, **kw)
    try:
        return [tuple(None if b is None else b.copy() for b in reader.next_batch()) for _ in range(count)]
    finally:
        reader.close()


# ---------------------------------------------------------------- list format

def test_list_format(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nsky\nsea\n")
    (tmp_path / "my photos").mkdir()
    text = ("# a comment\n\n"
            "a.jpg 3 1\n"
            "   \n"
            "b.jpg dog:0.5 sea\n"
            "my photos/c d.jpg\t2 0:0.25\n"
            "e.jpg\n"
            "f.jpg 2\t\n")
    source = tmp_path / "list.txt"
    source.write_text(text)
    lst = parse_image_list(str(source), class_names=str(names), root_folder="/data")
    assert lst.num_classes == 4 and lst.class_names == ["cat", "dog", "sky", "sea"]
    assert list(lst.paths) == ["/data/a.jpg", "/data/b.jpg", "/data/my photos/c d.jpg", "/data/e.jpg",
                               "/data/f.jpg"]
    assert lst.line_numbers.tolist() == [3, 5, 6, 7, 8]
    assert [v.tolist() for v in lst.labels] == [[3, 1], [1, 3], [2, 0], [], [2]]
    assert [v.tolist() for v in lst.values] == [[1, 1], [0.5, 1], [1, 0.25], [], [1]]


def test_labels_dense_and_indices(tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("a 3 1:0.5\nb\nc 4\n")
    lst = parse_image_list(str(source), num_classes=5)
    from softmax_multilabel_layer.data.image_data import encode_labels
    dense = np.full((3, 5), 7, np.float32)
    encode_labels(lst, [0, 1, 2], dense, "dense")
    np.testing.assert_array_equal(dense, [[0, 0.5, 0, 1, 0], [0.0] * 5, [0, 0, 0, 0, 1.0]])
    idx, w = np.full((3, 2), 7, np.float32), np.full((3, 2), 7, np.float32)
    encode_labels(lst, [2, 0, 1], idx, "indices", w)
    np.testing.assert_array_equal(idx, [[4, -1], [3, 1], [-1, -1]])
    np.testing.assert_array_equal(w, [[1.0, 0], [1, 0.5], [0.0, 0]])


# (id, list text, extra options, fragments expected in the message)
BAD_LISTS = [
    ("empty", "# only a comment\n\n", {}, ["list file", "has no images", "2 lines", "'path label label ...'"]),
    ("bad-token", "a.jpg 1\nb.jpg 2 x7\n", {}, ["list.txt:2", "bad label 'x7'", "0-based class index",
                                                "class_names"]),
    ("bad-weight", "a.jpg 1:abc\n", {}, ["list.txt:1", "bad label '1:abc'", "17:0.5"]),
    ("negative-weight", "a.jpg 1:-2\n", {}, ["list.txt:1", "'1:-2'", "weight -2.0", ">= 0"]),
    ("index-too-big", "a.jpg 1\nb.jpg\nc.jpg 0 5\n", {}, ["list.txt:3", "label 5 is out of range", "[0, 5)",
                                                           "num_classes 5"]),
    ("negative-index", "a.jpg -1\n", {}, ["list.txt:1", "label -1 is out of range"]),
    ("underscore-number", "a.jpg 1_0\n", {}, ["list.txt:1", "bad label '1_0'"]),
    ("repeated", "a.jpg 2 2:0.5\n", {}, ["list.txt:1", "class 2:0.5 appears twice"]),
    ("unknown-name", "a.jpg cat\nb.jpg dgo\n", {"names": "cat\ndog\n"},
     ["list.txt:2", "unknown class name 'dgo'", "2 class_names", "did you mean 'dog'"]),
    ("too-many-labels", "a.jpg 0 1 2\n", {"max_labels": 2}, ["list.txt:1", "3 labels but max_labels is 2"]),
]


@pytest.mark.parametrize("text,extra,fragments", [c[1:] for c in BAD_LISTS], ids=[c[0] for c in BAD_LISTS])
def test_bad_list_errors(tmp_path, text, extra, fragments):
    source = tmp_path / "list.txt"
    source.write_text(text)
    names = None
    if "names" in extra:
        names = tmp_path / "names.txt"
        names.write_text(extra["names"])
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(source), num_classes=None if names else 5, class_names=names and str(names),
                         max_labels=extra.get("max_labels"))
    message = str(err.value)
    assert message.startswith(OWNER + ": ")
    for fragment in fragments:
        assert fragment in message


def test_missing_list_file(tmp_path):
    with pytest.raises(MultilabelLossError, match=r"list file '.*nope.txt' not found \(working directory"):
        ImageBatchReader(options(tmp_path / "nope.txt"))


def test_missing_images_counted_and_named(tmp_path):
    paths = write_images(tmp_path / "img", [id_image(i) for i in range(3)])
    missing = [str(tmp_path / "img" / ("gone_%d.png" % i)) for i in range(7)]
    source = write_list(tmp_path / "list.txt", paths[:1] + missing + paths[1:], [[]] * 10)
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(options(source))
    message = str(err.value)
    assert "7 of 10 image files listed in" in message and "do not exist" in message
    assert "line 2: '%s'" % missing[0] in message and "line 6: '%s'" % missing[4] in message
    assert missing[5] not in message
    assert message.endswith(', ...; or set "skip_bad_images": true to leave them out')


def test_skip_bad_images_leaves_out_missing_files_with_one_warning(tmp_path, caplog):
    paths = write_images(tmp_path / "img", [id_image(i) for i in range(4)])
    gone = [str(tmp_path / "img" / ("gone_%d.png" % i)) for i in range(7)]
    listed = [paths[0], gone[0], paths[1]] + gone[1:] + paths[2:]
    labels = label_sets(len(listed), 5, seed=1)
    source = write_list(tmp_path / "list.txt", listed, labels)
    caplog.set_level(logging.WARNING, logger="softmax_multilabel_layer.data.image_data")
    batches = read_batches(options(source, batch_size=4, shuffle=False, skip_bad_images=True), 3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "left out 7 of 11 images listed in %r whose files do not exist" % source in lines[0]
    for number, path in zip([2, 4, 5, 6, 7, 8, 9], gone, strict=True):   # every such line is named
        assert "line %d: %r" % (number, path) in lines[0]
    want = [0, 1, 2, 3]
    for data, label, _ in batches:
        ids = decoded_ids(data)
        assert ids == want
        for row, i in zip(label, ids, strict=True):                    # labels stay with their image
            assert np.flatnonzero(row).tolist() == labels[listed.index(paths[i])]


def test_class_names_count_must_match(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\na\n")
    source = tmp_path / "list.txt"
    source.write_text("x.jpg a\n")
    with pytest.raises(MultilabelLossError, match=r"names.txt:3: class name 'a' repeats line 1"):
        parse_image_list(str(source), class_names=str(names))
    names.write_text("a\nb\n")
    with pytest.raises(MultilabelLossError, match=r"num_classes is 3 but class_names file .* has 2 names"):
        parse_image_list(str(source), num_classes=3, class_names=str(names))


# ---------------------------------------------------------------- decode and transform

def test_corrupt_image_named_at_decode(tmp_path):
    source, _ = id_list(tmp_path, n=6)
    bad = tmp_path / "ids" / "img_003.png"
    bad.write_bytes(b"not a png at all")
    reader = ImageBatchReader(options(source, batch_size=3, shuffle=False))
    try:
        reader.next_batch()
        with pytest.raises(ImageDecodeError, match=r"cannot read or decode image '.*img_003.png' \(.*ids.txt:4\)"):
            reader.next_batch()
    finally:
        reader.close()


def test_corrupt_image_without_the_option_names_it(tmp_path):
    source, _ = id_list(tmp_path, n=6)
    (tmp_path / "ids" / "img_004.png").write_bytes(b"not a png at all")
    reader = ImageBatchReader(options(source, batch_size=3, shuffle=False))
    try:
        reader.next_batch()
        with pytest.raises(ImageDecodeError, match=r"img_004.png' \(.*ids.txt:5\): missing, unreadable or not an "
                                                   r"image format OpenCV knows; set \"skip_bad_images\": true to "
                                                   r"replace bad images by others$"):
            reader.next_batch()
    finally:
        reader.close()


def bad_images_run(tmp_path, caplog, monkeypatch, n, bad, batches, threads=2, **kw):
    """Read ``batches`` batches of n id images, ``bad`` of them corrupt; returns (reader, batches, labels,
    log lines, decode calls per file name)."""
    source, labels = id_list(tmp_path, n=n)
    for i in bad:
        (tmp_path / "ids" / ("img_%03d.png" % i)).write_bytes(b"\xff\xd8 truncated")
    calls: dict[str, int] = {}
    real_load = image_data.load_image

    def load(path, *args, **kwargs):
        name = path.rsplit("/", 1)[1]
        calls[name] = calls.get(name, 0) + 1
        return real_load(path, *args, **kwargs)
    monkeypatch.setattr(image_data, "load_image", load)
    caplog.set_level(logging.WARNING, logger="softmax_multilabel_layer.data.image_data")
    reader = ImageBatchReader(options(source, skip_bad_images=True, threads=threads, **kw))
    try:
        got = [tuple(b.copy() for b in reader.next_batch()[:2]) for _ in range(batches)]
    finally:
        reader.close()
    return reader, got, labels, [r.getMessage() for r in caplog.records], calls


def test_skip_bad_images_replaces_counts_and_logs(tmp_path, caplog, monkeypatch):
    """Each bad image is reported once and decoded once, then a count per epoch; the count is of samples
    replaced (5 an epoch here), not of the bad replacements met on the way; a replacement carries its own
    labels. One decode thread: with two, both may meet a bad image before either has marked it bad, and each
    decodes it once (it is never decoded after that); the list-order test below runs two threads."""
    bad = (1, 2, 3, 5, 6)
    reader, got, labels, lines, calls = bad_images_run(tmp_path, caplog, monkeypatch, 8, bad, 7, batch_size=4,
                                                       shuffle=False, threads=1)
    flat = [i for data, _ in got for i in decoded_ids(data)]
    assert all(i not in bad for i in flat) and len(flat) == 28
    assert flat[0::8] == [0] * 4 and flat[4::8] == [4] * 3 and flat[7::8] == [7] * 3    # good ones keep their place
    for data, label in got:
        for row, i in zip(label, decoded_ids(data), strict=True):
            assert np.flatnonzero(row).tolist() == labels[i]
    assert reader.skipped[0] == reader.skipped[1] == reader.skipped[2] == 5
    once = [line for line in lines if "(reported once)" in line]
    assert [line.split("img_")[1][:3] for line in once] == ["001", "002", "003", "005", "006"]   # list order
    assert all(line.startswith("MultilabelImageDataLayer: skip_bad_images: cannot read or decode image")
               for line in once)
    epochs = [line for line in lines if "sample(s) of bad images replaced" in line]
    assert len(epochs) == 3 and all("epoch %d of" % e in epochs[e] for e in range(3))   # the 4th is not over
    assert all(": 5 sample(s) of bad images replaced" in line for line in epochs)
    assert all(calls["img_%03d.png" % i] == 1 for i in bad)          # libjpeg warns once, not every epoch


def test_skip_bad_images_reports_in_list_order_whatever_thread_fails_first(tmp_path, caplog, monkeypatch):
    """The thread on img_002 waits until img_005 has failed; the report still names img_002 first."""
    later_failed = threading.Event()
    real_load = image_data.load_image

    def load(path, *args, **kwargs):
        if path.endswith("img_002.png"):
            later_failed.wait(5)
        try:
            return real_load(path, *args, **kwargs)
        finally:
            if path.endswith("img_005.png"):
                later_failed.set()
    monkeypatch.setattr(image_data, "load_image", load)
    reader, got, labels, lines, calls = bad_images_run(tmp_path, caplog, monkeypatch, 8, (2, 5), 3, batch_size=4,
                                                       shuffle=False, threads=2)
    once = [line for line in lines if "(reported once)" in line]
    assert len(once) == 2 and "img_002.png" in once[0] and "img_005.png" in once[1]
    assert [line for line in lines if "sample(s)" in line] == [
        "MultilabelImageDataLayer: epoch 0 of %s (rank 0): 2 sample(s) of bad images replaced by other images"
        % (tmp_path / "ids.txt")]


@pytest.mark.parametrize("skip", [False, True])
def test_bad_first_image_without_crop_or_resize(tmp_path, skip):
    """The first image sets the batch size (as in Caffe): a bad one is skipped with the option, and without it
    the error names the option."""
    source, labels = id_list(tmp_path, n=5)
    (tmp_path / "ids" / "img_000.png").write_bytes(b"junk")
    opts = options(source, batch_size=2, shuffle=False, skip_bad_images=skip)
    if not skip:
        with pytest.raises(ImageDecodeError, match=r"img_000.png' \(.*ids.txt:1\).*; set \"skip_bad_images\": "
                                                   r"true to replace bad images by others"):
            ImageBatchReader(opts)
        return
    batches = read_batches(opts, 3)
    assert batches[0][0].shape == (2, 3, 6, 7)
    assert 0 not in [i for b in batches for i in decoded_ids(b[0])]


def test_sizes_must_agree_without_crop_or_resize(tmp_path):
    paths = write_images(tmp_path / "img", [id_image(0), id_image(1, size=(6, 8))])
    source = write_list(tmp_path / "list.txt", paths, [[0], [1]])
    reader = ImageBatchReader(options(source, batch_size=2, shuffle=False))
    try:
        with pytest.raises(ImageDecodeError, match=r"img_001.png' \(.*list.txt:2\) is 6x8 but the batch is 6x7"):
            reader.next_batch()
    finally:
        reader.close()


def test_image_smaller_than_crop(tmp_path):
    paths = write_images(tmp_path / "img", [pattern_image(0, (30, 40))])
    source = write_list(tmp_path / "list.txt", paths, [[0]])
    reader = ImageBatchReader(options(source, batch_size=1, crop_size=32))
    try:
        with pytest.raises(ImageDecodeError, match="is 30x40, smaller than crop_size 32"):
            reader.next_batch()
    finally:
        reader.close()


@pytest.mark.parametrize("dtype_scale", [1.0, 0.00390625, 0.017])
def test_transform_matches_reference_arithmetic(dtype_scale):
    """Crop, mirror, (pixel - mean) * scale in float32, against a direct numpy reference of Caffe's formula."""
    img = pattern_image(3, (20, 24))
    mean = [104.5, 117.0, 123.25]
    t = Transform(3, crop_size=16, mirror=True, mean_value=mean, scale=dtype_scale, train=True)
    seen_mirror = set()
    for seed in range(12):
        out = np.empty((3, 16, 16), np.float32)
        t(img, out, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        y, x, flip = int(rng.integers(5)), int(rng.integers(9)), bool(rng.integers(2))
        crop = img[y:y + 16, x:x + 16]
        crop = crop[:, ::-1] if flip else crop
        ref = (crop.transpose(2, 0, 1).astype(np.float32)
               - np.asarray(mean, np.float32).reshape(3, 1, 1)) * np.float32(dtype_scale)
        np.testing.assert_array_equal(out, ref)
        seen_mirror.add(flip)
    assert seen_mirror == {True, False}


def test_test_phase_centre_crop_no_mirror():
    img = pattern_image(4, (21, 26))
    t = Transform(3, crop_size=16, mirror=True, train=False)
    out = np.empty((3, 16, 16), np.float32)
    for seed in range(5):
        t(img, out, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, img[2:18, 5:21].transpose(2, 0, 1))


def test_greyscale_and_resize(tmp_path):
    img = pattern_image(5, (30, 50))
    path = write_images(tmp_path, [img], ".png")[0]
    grey = load_image(path, is_color=False)
    assert grey.shape == (30, 50, 1)
    # libpng's own grey conversion: within 1 of OpenCV's (exact values are checked against Caffe in test_data.py)
    assert np.abs(grey[:, :, 0].astype(int) - cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).max() <= 1
    resized = load_image(path, new_height=20, new_width=25)
    np.testing.assert_array_equal(resized, cv2.resize(img, (25, 20), interpolation=cv2.INTER_LINEAR))


# ---------------------------------------------------------------- epochs, shards, determinism

def test_epochs_are_fresh_permutations(tmp_path):
    n = 10
    source, labels = id_list(tmp_path, n=n)
    batches = read_batches(options(source, batch_size=5, seed=3), 8)      # 4 epochs
    flat = [i for b in batches for i in decoded_ids(b[0])]
    epochs = [flat[e * n:(e + 1) * n] for e in range(4)]
    for order in epochs:
        assert sorted(order) == list(range(n))
    assert len({tuple(o) for o in epochs}) == 4                      # each epoch its own order
    assert epochs[0] != list(range(n))
    # the labels travel with their image
    for data, label, _ in batches:
        for row, i in zip(label, decoded_ids(data), strict=True):
            assert np.flatnonzero(row).tolist() == labels[i]


def test_no_shuffle_reads_in_list_order_across_epochs(tmp_path):
    source, _ = id_list(tmp_path, n=7)
    batches = read_batches(options(source, batch_size=3), 5, train=False)
    assert [i for b in batches for i in decoded_ids(b[0])] == list(range(7)) * 2 + [0]


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_shards_stepped_side_by_side_are_equal_disjoint_and_cover_every_epoch(tmp_path, world_size):
    """Real readers, one per rank, stepped together: every rank reads ceil(N / W) images an epoch, so step k is
    in the same epochs on every rank; within an epoch the ranks' images are disjoint but for the W*L - N padded
    repeats (the first images of the epoch's permutation, as DistributedSampler pads), and cover all N.
    N = 11 is divisible by none of W = 2, 3, 4: shards of 6/5, 4/4/3, 3/3/3/2 images drifted apart before."""
    n, batch, seed = 11, 2, 7
    source, _ = id_list(tmp_path, n=n)
    length = -(-n // world_size)
    steps = 3 * length                        # three epochs (batch 2 straddles epochs when L is odd)
    readers = [ImageBatchReader(options(source, batch_size=batch, seed=seed), rank=r, world_size=world_size)
               for r in range(world_size)]
    try:
        streams: list[list[int]] = [[] for _ in range(world_size)]
        for _ in range(steps):                # side by side: step k on every rank, then step k + 1
            for r, reader in enumerate(readers):
                streams[r] += decoded_ids(reader.next_batch()[0])
    finally:
        for reader in readers:
            reader.close()
    for epoch in range(batch * steps // length):                     # six epochs
        parts = [stream[epoch * length:(epoch + 1) * length] for stream in streams]
        everything = [i for part in parts for i in part]
        assert set(everything) == set(range(n))                      # every image, every epoch
        repeats = sorted(i for i in set(everything) if everything.count(i) > 1)
        assert len(everything) - n == world_size * length - n == len(repeats) <= world_size - 1
        permutation = np.random.default_rng([seed, epoch]).permutation(n)
        assert repeats == sorted(permutation[:len(repeats)].tolist())  # the padding repeats the first images
        assert all(everything.count(i) == 2 for i in repeats)
        assert parts[0] == permutation[0::world_size][:length].tolist()


def overlapping_steps(n, world_size, batch, steps, seed=0):
    """Steps at which an image is on two ranks (stepped side by side): (same epoch, different epochs)."""
    schedules = [Schedule(n, batch, True, seed, r, world_size) for r in range(world_size)]
    same = across = 0
    for k in range(steps):
        batches = [s.batch(k) for s in schedules]
        pairs = [(a, c) for a in range(world_size) for c in range(a + 1, world_size)]
        same += any({x for x in batches[a]} & {x for x in batches[c]} for a, c in pairs)
        across += any({i for _, i in batches[a]} & {i for _, i in batches[c]} for a, c in pairs)
    return same, across


def test_shards_never_share_an_image_within_an_epoch_at_a_step():
    """The issue's counts: N=11, W=2, batch 3 had an image on both ranks in 118 of 200 steps (seed 0); N=1001,
    W=4, batch 32 in 47 of 300. Now: none within an epoch. Only steps whose batch spans two epochs (L = 251 is
    not a multiple of 32) may meet one image in the old epoch's tail on one rank and the new epoch's head on
    another: two independent permutations, as Caffe's own layers wrap around."""
    assert overlapping_steps(11, 2, 3, 200) == (0, 0)
    same, across = overlapping_steps(1001, 4, 32, 300)
    assert same == 0 and across <= 37                            # 37 of the 300 steps span two epochs
    assert Schedule(1001, 32, rank=3, world_size=4).shard_size == Schedule(1001, 32, rank=0, world_size=4).shard_size


def test_same_seed_same_batches_whatever_the_threads(tmp_path):
    paths = write_images(tmp_path / "img", [pattern_image(i, (20, 23)) for i in range(9)], ".jpg")
    source = write_list(tmp_path / "list.txt", paths, label_sets(9, 5))
    kw = dict(batch_size=4, crop_size=16, mirror=True, mean_value=[100, 110, 120], scale=0.5, seed=11)
    reference = read_batches(options(source, threads=1, prefetch=1, **kw), 7)
    for threads, prefetch in ((2, 3), (4, 2), (3, 5)):
        got = read_batches(options(source, threads=threads, prefetch=prefetch, **kw), 7)
        for a, b in zip(reference, got, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    other = read_batches(options(source, threads=2, **dict(kw, seed=12)), 7)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(reference, other, strict=True))


def test_augmentation_depends_on_sample_not_on_shard(tmp_path):
    """Image i in epoch e gets the same crop and mirror on whichever rank reads it."""
    paths = write_images(tmp_path / "img", [pattern_image(i, (20, 23)) for i in range(6)])
    source = write_list(tmp_path / "list.txt", paths, [[i % 5] for i in range(6)])
    kw = dict(batch_size=3, crop_size=12, mirror=True, seed=5)
    whole = read_batches(options(source, **kw), 2)
    order = np.random.default_rng([5, 0]).permutation(6)
    by_image = {int(i): d for i, d in zip(order, np.concatenate([b[0] for b in whole]), strict=True)}
    rank1 = read_batches(options(source, **kw), 1, rank=1, world_size=2)[0][0]
    for i, d in zip(order[1::2], rank1, strict=True):
        np.testing.assert_array_equal(d, by_image[int(i)])


def test_schedule_needs_enough_images():
    with pytest.raises(MultilabelLossError, match="3 images cannot be shared among world_size 4 ranks"):
        Schedule(3, 2, world_size=4)


# ---------------------------------------------------------------- prefetch bound and threads

def test_holds_at_most_prefetch_buffers_and_threads_stop(tmp_path):
    source, _ = id_list(tmp_path, n=10)
    before = set(threading.enumerate())
    reader = ImageBatchReader(options(source, batch_size=3, prefetch=2, threads=3))
    ids = {id(reader.next_batch()[0]) for _ in range(12)}
    assert len(ids) == 2                        # buffers are reused: prefetch of them, no more
    assert len(reader._inflight) == 1           # plus the one just handed out
    workers = [t for t in threading.enumerate() if t not in before]
    assert len(workers) == 3 and all(t.daemon for t in workers)
    reader.close()
    assert not any(t.is_alive() for t in workers)
    with pytest.raises(MultilabelLossError, match="closed"):
        reader.next_batch()


def test_dropping_the_reader_stops_its_threads(tmp_path):
    import gc
    source, _ = id_list(tmp_path, n=4)
    reader = ImageBatchReader(options(source, batch_size=2, threads=2))
    reader.next_batch()
    workers = list(reader._threads)
    del reader
    gc.collect()
    for t in workers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in workers)


def test_missing_relative_paths_say_where_they_were_looked_for(tmp_path, monkeypatch):
    source = tmp_path / "list.txt"
    source.write_text("img/a.jpg 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MultilabelLossError, match=r"1 of 1 image files .* line 1: 'img/a.jpg'; relative paths are "
                                                  r"read from the working directory .*, set root_folder"):
        ImageBatchReader(options(source))


def test_utf8_byte_order_mark_is_stripped_from_list_and_class_names(tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes("\ufeffcat\ndog\n".encode("utf-8"))
    source = tmp_path / "list.txt"
    source.write_bytes("\ufeff/data/a.jpg cat\n/data/é.jpg dog cat\n".encode("utf-8"))
    lst = parse_image_list(str(source), class_names=str(names))
    assert lst.class_names == ["cat", "dog"]
    assert list(lst.paths) == ["/data/a.jpg", "/data/é.jpg"]
    assert [v.tolist() for v in lst.labels] == [[0], [1, 0]]


@pytest.mark.parametrize("which", ["list", "names"])
def test_latin1_list_is_refused_naming_the_encoding_and_the_line(tmp_path, which):
    names = tmp_path / "names.txt"
    source = tmp_path / "list.txt"
    names.write_bytes("cat\nchâteau\n".encode("latin-1" if which == "names" else "utf-8"))
    source.write_bytes("a.jpg cat\n\nphotos/caf\xe9.jpg cat\n".encode("latin-1") if which == "list"
                       else b"a.jpg cat\n")
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(source), class_names=str(names))
    where, line, column = (("list file %r" % str(source), 3, 11) if which == "list"
                           else ("class_names file %r" % str(names), 2, 3))
    assert str(err.value).startswith("%s: %s is not UTF-8: line %d, column %d has byte 0x%s"
                                     % (OWNER, where, line, column, "e9" if which == "list" else "e2"))
    assert "save the file as UTF-8" in str(err.value)


def reference_parse(text, num_classes):
    """An independent reading of the list format (indices and index:weight only): [(line, path, labels, values)]."""
    out = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip() if "\t" not in raw.strip(" \r") else raw.lstrip(" ").rstrip()
        if not line or line.startswith("#"):
            continue
        path, rest = line.split("\t", 1) if "\t" in line else (line.split()[0], " ".join(line.split()[1:]))
        labels, values = [], []
        for token in rest.split():
            head, _, weight = token.partition(":")
            labels.append(int(head))
            values.append(float(weight) if weight else 1.0)
        out.append((number, path.strip(), labels, values))
    return out


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_compact_list_equals_a_line_by_line_reading_across_chunks(tmp_path, monkeypatch, chunk):
    """Chunks of plain indices (parsed at once), chunks with weights, comments, TABs, CRLF, blank lines and
    non-ASCII paths (line by line), cut at any byte: the same images, lines, labels and values."""
    monkeypatch.setattr(image_data, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(5)
    lines = []
    for i in range(300):
        kind = i % 10
        labels = rng.choice(9, int(rng.integers(1 if kind == 7 else 0, 4)), replace=False).tolist()
        tokens = " ".join("%d:%g" % (c, 0.5) if kind == 3 and j == 0 else str(c) for j, c in enumerate(labels))
        path = "dir/é_%03d.jpg" % i if kind == 5 else "dir/img_%03d.jpg" % i
        if kind == 7:
            lines.append("my dir/a b %d.jpg\t%s" % (i, tokens))
        else:
            lines.append("%s %s%s" % (path, tokens, "\r" if kind == 8 else ""))
        if kind == 2:
            lines.append("# a comment %d" % i)
        if kind == 4:
            lines.append("   ")
    text = "\n".join(lines) + "\n"
    source = tmp_path / "list.txt"
    source.write_text(text, encoding="utf-8")
    parsed = parse_image_list(str(source), num_classes=9, root_folder="/r")
    want = reference_parse(text, 9)
    assert len(parsed) == len(want) == 300
    assert parsed.line_numbers.tolist() == [w[0] for w in want]
    assert list(parsed.paths) == ["/r/" + w[1] for w in want]
    assert [v.tolist() for v in parsed.labels] == [w[2] for w in want]
    assert [v.tolist() for v in parsed.values] == [w[3] for w in want]
    # compact: the path bytes once, and 8 + 8 + 8 bytes a line plus 8 a label
    assert len(parsed.path_buffer) == sum(len(w[1].encode()) for w in want)
    arrays = sum(a.nbytes for a in (parsed.path_offsets, parsed.line_numbers, parsed.label_offsets,
                                    parsed.label_indices, parsed.label_values))
    assert arrays == 8 * (301 + 300 + 301) + 8 * sum(len(w[2]) for w in want)


@pytest.mark.parametrize("chunk", [16, 1 << 20])
def test_errors_in_a_later_chunk_name_their_line(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(image_data, "CHUNK_BYTES", chunk)
    source = tmp_path / "list.txt"
    good = "".join("img_%02d.jpg %d\n" % (i, i % 5) for i in range(40))
    source.write_text(good + "bad.jpg 2 7\n")
    with pytest.raises(MultilabelLossError, match=r"list.txt:41: label 7 is out of range"):
        parse_image_list(str(source), num_classes=5)
    source.write_text(good + "bad.jpg 2 2\n")
    with pytest.raises(MultilabelLossError, match=r"list.txt:41: class 2 appears twice"):
        parse_image_list(str(source), num_classes=5)
    source.write_text(good + "bad.jpg 1 2 3\n")
    with pytest.raises(MultilabelLossError, match=r"list.txt:41: 3 labels but max_labels is 2"):
        parse_image_list(str(source), num_classes=5, max_labels=2)
    source.write_bytes(good.encode() + "caf\xe9.jpg 1\n".encode("latin-1"))
    with pytest.raises(MultilabelLossError, match=r"is not UTF-8: line 41, column 4 has byte 0xe9"):
        parse_image_list(str(source), num_classes=5)


def test_class_names_file_errors_exactly(tmp_path):
    """Every read_class_names error, whole message (a mutant that pads or drops a part fails)."""
    from softmax_multilabel_layer.data.image_data import read_class_names
    names = tmp_path / "names.txt"

    def message(text, owner=OWNER):
        if text is not None:
            names.write_bytes(text)
        with pytest.raises(MultilabelLossError) as err:
            read_class_names(str(names), owner)
        return str(err.value)
    assert message(b"cat\n\ndog\n") == "%s: %s:2: empty class name; expected one class name a line (line i is " \
        "class i - 1)" % (OWNER, names)
    assert message(b"cat\ndog\ncat\n") == "%s: %s:3: class name 'cat' repeats line 1" % (OWNER, names)
    assert message(b"\n  \n") == "%s: class_names file %r has no names" % (OWNER, str(names))
    assert message(b"caf\xe9\n", owner="softmax-multilabel convert") == (
        "softmax-multilabel convert: class_names file %r is not UTF-8: line 1, column 4 has byte 0xe9 (invalid "
        "continuation byte); save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)" % str(names))
    names.unlink()
    names.mkdir()
    assert message(None) == "%s: class_names file %r cannot be read: Is a directory" % (OWNER, str(names))
    names.rmdir()
    names.write_text("a\n b \nc\n\n\n")                    # names are stripped; trailing blank lines are fine
    assert read_class_names(str(names)) == ["a", "b", "c"]


def test_image_list_without_some_images_keeps_everything_else(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nsky\n")
    source = tmp_path / "list.txt"
    source.write_text("a.jpg cat dog:0.5\n# c\nb.jpg\nc d.jpg\tsky\nd.jpg dog sky cat\ne.jpg cat:2\n")
    full = parse_image_list(str(source), class_names=str(names), root_folder="/r")
    for drop in ([1, 3], [0], [4], [0, 1, 2, 3]):
        kept = [i for i in range(5) if i not in drop]
        part = full.without(drop)
        assert (part.source, part.root_folder, part.num_classes, part.class_names) == \
            (str(source), "/r", 3, ["cat", "dog", "sky"])
        assert len(part) == len(kept) and list(part.paths) == [full.paths[i] for i in kept]
        assert part.line_numbers.tolist() == [full.line_numbers[i] for i in kept]
        assert [v.tolist() for v in part.labels] == [full.labels[i].tolist() for i in kept]
        assert [v.tolist() for v in part.values] == [full.values[i].tolist() for i in kept]
        assert part.where(0) == "%s:%d" % (source, full.line_numbers[kept[0]])
    assert full.paths[-1] == "/r/e.jpg" and full.paths[1:3] == ["/r/b.jpg", "/r/c d.jpg"]
    assert full.labels[-1].tolist() == [0] and full.values[0].tolist() == [1.0, 0.5]
    with pytest.raises(IndexError):
        full.paths[5]


def test_label_tokens_exactly(tmp_path):
    """_parse_label's corners and whole messages: weights (0 allowed), names with ':' in them, suggestions."""
    source = tmp_path / "list.txt"
    names = tmp_path / "names.txt"
    names.write_text("x:y\ndog\nsky\n")

    def parse(text, with_names=False, **kw):
        source.write_text(text)
        return parse_image_list(str(source), num_classes=None if with_names else 5,
                                class_names=str(names) if with_names else None, **kw)

    def error(text, with_names=False, **kw):
        with pytest.raises(MultilabelLossError) as err:
            parse(text, with_names, **kw)
        return str(err.value)
    where = "%s:%d" % (source, 2)
    assert parse("a.jpg 1\nb.jpg 3:0 2:0.25\n").values[1].tolist() == [0.0, 0.25]     # weight 0 is allowed
    got = parse("a.jpg x:y\nb.jpg x:y:0.5 dog:2\n", with_names=True)                 # the last ':' splits
    assert [v.tolist() for v in got.labels] == [[0], [0, 1]] and got.values[1].tolist() == [0.5, 2.0]
    assert error("a.jpg 1\nb.jpg 1:abc\n") == ("%s: %s: bad label '1:abc': the weight after ':' must be a number, "
                                              "e.g. 17:0.5" % (OWNER, where))
    assert error("a.jpg 1\nb.jpg cat\n") == (
        "%s: %s: bad label 'cat': expected a 0-based class index (an integer), optionally with a weight as "
        "index:weight (e.g. 17:0.5); class names need the class_names option" % (OWNER, where))
    assert error("a.jpg dog\nb.jpg dgo\n", True) == ("%s: %s: unknown class name 'dgo' (not among the 3 "
                                                     "class_names); did you mean 'dog'?" % (OWNER, where))
    assert error("a.jpg dog\nb.jpg zzzzzz\n", True) == ("%s: %s: unknown class name 'zzzzzz' (not among the 3 "
                                                        "class_names)" % (OWNER, where))
    assert error("a.jpg 1\nb.jpg 5:0.5\n") == ("%s: %s: label 5 is out of range: expected a class index in [0, 5) "
                                              "(num_classes 5; indices are 0-based)" % (OWNER, where))
    assert error("a.jpg 1\nb.jpg 1:inf\n") == ("%s: %s: label '1:inf' has weight inf; expected a finite number >= 0"
                                              % (OWNER, where))
    # a line with exactly max_labels labels is fine, on the line-by-line path (a weight sends it there) too
    assert parse("a.jpg 1:0.5 2\n", max_labels=2).labels[0].tolist() == [1, 2]
    assert parse("a.jpg 1 2\n", max_labels=2).labels[0].tolist() == [1, 2]


def test_not_utf8_after_a_blank_first_line_names_line_and_column(tmp_path):
    source = tmp_path / "list.txt"
    source.write_bytes(b"\nb\xe9.jpg 1\n")
    with pytest.raises(MultilabelLossError, match=r"is not UTF-8: line 2, column 2 has byte 0xe9"):
        parse_image_list(str(source), num_classes=3)


def test_skip_option_names_the_layer_option_or_the_convert_flag():
    from softmax_multilabel_layer.data.image_data import skip_option
    assert skip_option(OWNER) == '"skip_bad_images": true'
    assert skip_option("softmax-multilabel convert") == "--skip-bad-images"


def test_first_image_of_the_first_epoch_sets_the_size(tmp_path):
    """Without crop or resize, the first image of epoch 0's order sets H x W (as Caffe's first image); with
    skip_bad_images bad ones before it are reported once; a list of only bad images is an error."""
    paths = write_images(tmp_path / "img", [id_image(i, size=(6 + i, 7 + i)) for i in range(4)])
    source = write_list(tmp_path / "list.txt", paths, [[0]] * 4)
    seed = next(s for s in range(50) if np.random.default_rng([s, 0]).permutation(4)[0]
                != np.random.default_rng([s, 1]).permutation(4)[0])
    first = int(np.random.default_rng([seed, 0]).permutation(4)[0])
    reader = ImageBatchReader(options(source, batch_size=1, seed=seed, threads=1, prefetch=1))
    reader.close()
    assert reader.image_shape == (6 + first, 7 + first)
    for i in range(4):
        (tmp_path / "img" / ("img_%03d.png" % i)).write_bytes(b"junk")
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(options(source, batch_size=1, seed=seed, skip_bad_images=True))
    assert str(err.value) == "%s: no image of the first epoch of %s can be decoded (skip_bad_images)" % (OWNER,
                                                                                                    source)
    with pytest.raises(ImageDecodeError) as err:
        ImageBatchReader(options(source, batch_size=1, seed=seed, threads=1, prefetch=1))
    assert str(err.value).startswith("%s: cannot read or decode image %r (%s:%d)" % (OWNER, paths[first], source,
                                                                                   first + 1))
    # one bad first image with the option: reported once, by name
    order = np.random.default_rng([seed, 0]).permutation(4)
    for i in range(4):
        cv2.imwrite(str(tmp_path / "img" / ("img_%03d.png" % i)), id_image(i, size=(6 + i, 7 + i)))
    bad = int(order[0])
    (tmp_path / "img" / ("img_%03d.png" % bad)).write_bytes(b"junk")
    reader = ImageBatchReader(options(source, batch_size=1, seed=seed, skip_bad_images=True, threads=1,
                                      prefetch=1))
    try:
        assert reader.image_shape == (6 + int(order[1]), 7 + int(order[1]))
        assert reader.bad_images[bad].startswith("%s: cannot read or decode image %r" % (OWNER, paths[bad]))
    finally:
        reader.close()


def test_reader_indices_buffers_and_dtypes(tmp_path):
    source = tmp_path / "list.txt"
    paths = write_images(tmp_path / "img", [id_image(i) for i in range(3)])
    source.write_text("%s 4 1:0.5\n%s\n%s 2:2\n" % tuple(paths))
    data, label, weight = read_batches(options(source, batch_size=3, label_format="indices", max_labels=3,
                                               shuffle=False), 1, train=False)[0]
    assert data.dtype == label.dtype == weight.dtype == np.float32 and data.shape == (3, 3, 6, 7)
    np.testing.assert_array_equal(label, [[4, 1, -1], [-1, -1, -1], [2, -1, -1]])
    np.testing.assert_array_equal(weight, np.array([[1, 0.5, 0], [0, 0, 0], [2, 0, 0]]))
    dense = read_batches(options(source, batch_size=3, shuffle=False), 1, train=False)[0]
    assert dense[2] is None and dense[1].dtype == np.float32


def test_replacements_are_drawn_and_augmented_as_documented(tmp_path):
    """A bad image b of epoch e is replaced by order(e)[default_rng([seed, e, b, 1]).integers(L)], whose crop and
    mirror come from default_rng([seed, e, replacement, 1]) (attempt 1), independent of threads."""
    paths = write_images(tmp_path / "img", [pattern_image(i, (14, 15)) for i in range(6)])
    source = write_list(tmp_path / "list.txt", paths, [[i % 5] for i in range(6)])
    Path(paths[2]).write_bytes(b"junk")
    kw = dict(batch_size=3, crop_size=10, mirror=True, seed=3, skip_bad_images=True, shuffle=False)
    batches = read_batches(options(source, **kw), 2)
    order = np.arange(6)
    replacement = int(order[np.random.default_rng([3, 0, 2, 1]).integers(6)])
    assert replacement != 2
    t = Transform(3, crop_size=10, mirror=True)
    want = np.empty((3, 10, 10), np.float32)
    t(load_image(paths[replacement]), want, np.random.default_rng([3, 0, replacement, 1]))
    np.testing.assert_array_equal(batches[0][0][2], want)
    t(load_image(paths[4]), want, np.random.default_rng([3, 0, 4]))          # a good image: attempt 0, no key
    np.testing.assert_array_equal(batches[1][0][1], want)
    assert batches[0][1][2].tolist() == [float(c == replacement % 5) for c in range(5)]


def test_reader_errors_exactly(tmp_path):
    """Whole messages: crop larger than an image (equal is fine), a size other than the batch's, all images bad,
    a closed reader; after an error the next call raises it again."""
    paths = write_images(tmp_path / "img", [pattern_image(0, (12, 14)), pattern_image(1, (12, 13))])
    source = write_list(tmp_path / "list.txt", paths, [[0], [1]])
    reader = ImageBatchReader(options(source, batch_size=2, crop_size=13, shuffle=False, threads=1))   # one error
    try:
        with pytest.raises(ImageDecodeError) as err:
            reader.next_batch()
        assert str(err.value) == ("%s: image %r (%s:1) is 12x14, smaller than crop_size 13; resize it with "
                                  "new_height and new_width; set \"skip_bad_images\": true to replace bad images "
                                  "by others" % (OWNER, paths[0], source))
        with pytest.raises(ImageDecodeError, match="is 12x14, smaller than crop_size 13"):
            reader.next_batch()                                  # the same error again
    finally:
        reader.close()
    with pytest.raises(MultilabelLossError) as closed:
        reader.next_batch()
    assert str(closed.value) == "%s: the reader is closed" % OWNER
    assert read_batches(options(source, batch_size=2, crop_size=12, shuffle=False), 1)[0][0].shape == (2, 3, 12, 12)
    reader = ImageBatchReader(options(source, batch_size=2, shuffle=False))
    try:
        with pytest.raises(ImageDecodeError) as err:
            reader.next_batch()
        assert str(err.value).startswith("%s: image %r (%s:2) is 12x13 but the batch is 12x14 (set by the first "
                                         "image); images of different sizes need new_height/new_width or "
                                         "crop_size" % (OWNER, paths[1], source))
    finally:
        reader.close()
    for p in paths:
        Path(p).write_bytes(b"junk")
    reader = ImageBatchReader(options(source, batch_size=2, crop_size=4, skip_bad_images=True, threads=1))
    try:
        with pytest.raises(ImageDecodeError) as err:
            reader.next_batch()
        assert str(err.value).startswith("%s: 51 bad images in a row while replacing one (skip_bad_images); last: "
                                         "%s: cannot read or decode image" % (OWNER, OWNER))
    finally:
        reader.close()


def test_each_epochs_count_is_logged_when_the_epoch_ends(tmp_path, caplog):
    """Batches of 3 over 8 images straddle epochs: epoch e's count is logged with the first batch that reaches
    into epoch e + 1, not before, not later; epochs without bad images log nothing."""
    source, _ = id_list(tmp_path, n=8)
    (tmp_path / "ids" / "img_001.png").write_bytes(b"junk")
    caplog.set_level(logging.WARNING, logger="softmax_multilabel_layer.data.image_data")
    reader = ImageBatchReader(options(source, batch_size=3, shuffle=False, skip_bad_images=True, threads=1))
    counts = []
    try:
        for _ in range(6):                                 # positions 0-17: epochs 0, 1 and two of epoch 2
            reader.next_batch()
            counts.append(sum("sample(s) of bad images" in r.getMessage() for r in caplog.records))
    finally:
        reader.close()
    assert counts == [0, 0, 1, 1, 1, 2]                    # batch 2 reaches position 8, batch 5 position 17
    lines = [r.getMessage() for r in caplog.records if "sample(s)" in r.getMessage()]
    assert lines == ["%s: epoch %d of %s (rank 0): 1 sample(s) of bad images replaced by other images"
                     % (OWNER, e, source) for e in (0, 1)]
    once = [r.getMessage() for r in caplog.records if "reported once" in r.getMessage()]
    assert once == ["%s: skip_bad_images: cannot read or decode image %r (%s:2): missing, unreadable or not an "
                    "image format OpenCV knows; it is replaced by other images of the epoch from now on (reported "
                    "once)" % (OWNER, str(tmp_path / "ids" / "img_001.png"), source)]


def test_schedule_and_transform_defaults_and_edges():
    """The documented defaults (shuffle, seed 0, rank 0 of 1; no crop, no mirror, mean 0, scale 1), the exact
    shard error, batches after the first, the augmentation key with and without an attempt, a scale of 2, a
    grey image and the mirror coin (an independent reference: draw the crop offsets, then one integer < 2)."""
    s = Schedule(5, 2)
    assert (s.shuffle, s.seed, s.rank, s.world_size, s.shard_size) == (True, 0, 0, 1, 5)
    assert s.epoch_order(0).tolist() == np.random.default_rng([0, 0]).permutation(5).tolist()
    order0, order1 = s.epoch_order(0).tolist(), s.epoch_order(1).tolist()
    assert s.batch(2) == [(0, order0[4]), (1, order1[0])] and s.batch(3) == [(1, order1[1]), (1, order1[2])]
    with pytest.raises(MultilabelLossError) as err:
        Schedule(1, 1, world_size=2)
    assert str(err.value) == "%s: 1 images cannot be shared among world_size 2 ranks" % OWNER
    assert s.sample_rng(2, 3).integers(1 << 30) == np.random.default_rng([0, 2, 3]).integers(1 << 30)
    assert s.sample_rng(2, 3, 2).integers(1 << 30) == np.random.default_rng([0, 2, 3, 2]).integers(1 << 30)
    img = pattern_image(1, (5, 7))
    out = np.empty((3, 5, 7), np.float32)
    Transform(3)(img, out, np.random.default_rng(0))
    np.testing.assert_array_equal(out, img.transpose(2, 0, 1).astype(np.float32))
    t = Transform(3, crop_size=0, mirror=False, mean_value=None, scale=1.0, train=True)
    assert t.mean.dtype == np.float32 and not t.mean.any() and t.scale == 1 and not t.mirror
    Transform(3, scale=2.0)(img, out, np.random.default_rng(0))
    np.testing.assert_array_equal(out, img.transpose(2, 0, 1).astype(np.float32) * 2)
    grey = img[:, :, 1:2]
    one = np.empty((1, 5, 7), np.float32)
    Transform(1, mean_value=[3])(grey, one, np.random.default_rng(0))
    np.testing.assert_array_equal(one[0], grey[:, :, 0].astype(np.float32) - 3)
    flips = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        y, x = int(rng.integers(5 - 3 + 1)), int(rng.integers(7 - 3 + 1))
        flip = bool(rng.integers(2))
        flips.append(flip)
        crop = img[y:y + 3, x:x + 3][:, ::-1] if flip else img[y:y + 3, x:x + 3]
        got = np.empty((3, 3, 3), np.float32)
        Transform(3, crop_size=3, mirror=True)(img, got, np.random.default_rng(seed))
        np.testing.assert_array_equal(got, crop.transpose(2, 0, 1).astype(np.float32))
    assert 0 < sum(flips) < len(flips)


def test_reader_passes_its_options_on(tmp_path):
    """class_names, root_folder, max_labels, is_color, new size and owner reach the list parser, the file
    check, the decoder and the transform; the exact type and rank errors."""
    paths = write_images(tmp_path / "img", [pattern_image(i, (9, 11)) for i in range(3)])
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    source = tmp_path / "list.txt"
    source.write_text("".join("%s dog cat\n" % Path(p).name for p in paths))
    root = str(tmp_path / "img") + "/"
    reader = ImageBatchReader(options(source, num_classes=None, class_names=str(names), root_folder=root,
                                      batch_size=2, is_color=False, new_height=6, new_width=8, shuffle=False,
                                      mean_value=[10], max_labels=2, label_format="indices", threads=1),
                              train=False)
    try:
        assert reader.images.class_names == ["cat", "dog"] and reader.images.paths[0] == paths[0]
        assert reader.data_shape == (2, 1, 6, 8) and reader.image_shape == (6, 8) and not reader.transform.train
        data, label, weight = reader.next_batch()
        want = cv2.resize(cv2.imread(paths[1], cv2.IMREAD_GRAYSCALE), (8, 6)).astype(np.float32) - 10
        np.testing.assert_array_equal(data[1, 0], want)
        assert label.tolist() == [[1, 0], [1, 0]]
    finally:
        reader.close()
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(options(source, num_classes=None, class_names=str(names), root_folder=root, max_labels=1,
                                 label_format="indices"))
    assert str(err.value) == "%s: %s:1: 2 labels but max_labels is 1" % (OWNER, source)
    (tmp_path / "img" / Path(paths[2]).name).unlink()
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(ImageDataOptions(owner="other", source=str(source), class_names=str(names),
                                          root_folder=root, batch_size=2))
    assert str(err.value).startswith("other: 1 of 3 image files listed in %r do not exist (root_folder %r)"
                                     % (str(source), root))
    with pytest.raises(TypeError) as type_err:
        ImageBatchReader("list.txt")                                         # type: ignore[arg-type]
    assert str(type_err.value) == "options must be an ImageDataOptions, got 'str'"
    source.write_text("".join("%s 1\n" % p for p in paths[:2]))
    for rank, world_size in ((2, 2), (-1, 2)):
        with pytest.raises(MultilabelLossError) as err:
            ImageBatchReader(options(source), rank=rank, world_size=world_size)
        assert str(err.value) == "%s: rank must be in [0, world_size) = [0, 2), got %d" % (OWNER, rank)
    reader = ImageBatchReader(options(source, batch_size=1, threads=1), rank=1, world_size=2)
    reader.close()
    assert (reader.rank, reader.world_size, reader.train) == (1, 2, True)


def test_plain_chunks_are_converted_at_once_never_line_by_line(tmp_path, monkeypatch):
    """Chunks of plain indices (or of class names only) never reach the line-by-line parser, whatever their
    rows (C + 1 rows, where a key of row * C + index would collide if computed otherwise), empty lines or
    max_labels (equal to the longest line); and the file is read a chunk at a time, several lines a chunk."""
    def never(*args, **kwargs):
        raise AssertionError("line by line")
    monkeypatch.setattr(image_data, "_line_labels", never)
    rows = [[1], [2, 0], [], [4, 3, 2], [0], [0, 4], [3]]           # 7 rows > C = 5
    source = tmp_path / "list.txt"
    source.write_text("".join("im%d.jpg %s\n" % (i, " ".join(map(str, r))) for i, r in enumerate(rows)))
    got = parse_image_list(str(source), 5, max_labels=3)
    assert [v.tolist() for v in got.labels] == rows and all(v.tolist() == [1.0] * len(v) for v in got.values)
    assert got.label_indices.dtype == np.int32 and got.label_values.dtype == np.float32
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    source.write_text("".join("im%d.jpg %s\n" % (i, " ".join("abcde"[c] for c in r)) for i, r in enumerate(rows)))
    got = parse_image_list(str(source), class_names=str(names))
    assert [v.tolist() for v in got.labels] == rows
    texts = []
    chunk = image_data._ListParser.chunk

    def record(self, text, first_line):
        texts.append(text)
        return chunk(self, text, first_line)
    monkeypatch.setattr(image_data._ListParser, "chunk", record)
    monkeypatch.setattr(image_data, "CHUNK_BYTES", 24)
    source.write_text("".join("im%d.jpg %d\n" % (i, i % 5) for i in range(12)))      # 10-11 bytes a line
    got = parse_image_list(str(source), 5)
    assert got.line_numbers.tolist() == list(range(1, 13))
    assert max(len(t) for t in texts) <= 24 + 11 and len(texts) >= 5
    assert any(t.count("\n") >= 2 for t in texts)                   # whole lines, several at a time


def test_tab_lines_and_empty_lists_exactly(tmp_path):
    """A TAB line's path is everything before the first TAB (spaces around it stripped); '#' after leading
    spaces is a comment; an empty path is named; a list of only comments counts its lines with or without a
    final newline."""
    source = tmp_path / "list.txt"
    source.write_text("  a b.jpg \t1\t2\n  # note\tx\nc.jpg 3\n")
    got = parse_image_list(str(source), 5)
    assert list(got.paths) == ["a b.jpg", "c.jpg"] and [v.tolist() for v in got.labels] == [[1, 2], [3]]
    assert got.line_numbers.tolist() == [1, 3]
    source.write_text("a.jpg 1\n\t2\n")
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(source), 5)
    assert str(err.value) == "%s: %s:2: empty image path before the TAB" % (OWNER, source)
    for text, lines in (("# a\n# b", 2), ("# a\n\n", 2), ("", 0), ("\n", 1)):
        source.write_text(text)
        with pytest.raises(MultilabelLossError) as err:
            parse_image_list(str(source), 5)
        assert str(err.value) == ("%s: list file %r has no images (%d lines, all blank or comments); expected "
                                  "lines 'path label label ...'" % (OWNER, str(source), lines))
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(source))
    assert str(err.value) == "%s: num_classes is required (or a class_names file)" % OWNER
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(tmp_path), 5)
    assert str(err.value).startswith("%s: list file %r cannot be read: " % (OWNER, str(tmp_path)))


def test_missing_files_messages_exactly(tmp_path, monkeypatch, caplog):
    """check_files_exist's whole messages: more than MAX_REPORTED missing (', ...'), all missing (no 'or set'
    hint), relative paths with and without root_folder, and the skip warning naming every line."""
    from softmax_multilabel_layer.data.image_data import check_files_exist
    monkeypatch.chdir(tmp_path)
    real = write_images(tmp_path / "img", [pattern_image(0, (4, 4))])[0]
    source = tmp_path / "list.txt"

    def error(lines, root=""):
        source.write_text("".join("%s 1\n" % p for p in lines))
        with pytest.raises(MultilabelLossError) as err:
            check_files_exist(parse_image_list(str(source), 5, root_folder=root), OWNER, root)
        return str(err.value)
    gone = ["/nonexistent/m%d.jpg" % i for i in range(6)]
    named = ", ".join("line %d: %r" % (i + 2, p) for i, p in enumerate(gone[:5]))
    assert error([real] + gone) == ("%s: 6 of 7 image files listed in %r do not exist: %s, ...; or set "
                                    "\"skip_bad_images\": true to leave them out" % (OWNER, str(source), named))
    named = ", ".join("line %d: %r" % (i + 1, p) for i, p in enumerate(gone[:5]))
    assert error(gone[:5]) == "%s: 5 of 5 image files listed in %r do not exist: %s" % (OWNER, str(source), named)
    assert error(["x.jpg", real]) == (
        "%s: 1 of 2 image files listed in %r do not exist: line 1: 'x.jpg'; relative paths are read from the "
        "working directory %s, set root_folder to the images' folder; or set \"skip_bad_images\": true to leave "
        "them out" % (OWNER, str(source), tmp_path))
    assert error(["x.jpg"], root="r") == (
        "%s: 1 of 1 image files listed in %r do not exist (root_folder 'r'): line 1: 'r/x.jpg'; relative paths "
        "are read from the working directory %s" % (OWNER, str(source), tmp_path))
    source.write_text("%s 1\n/nonexistent/a.jpg 2\n%s 3\n/nonexistent/b.jpg 4\n" % (real, real))
    caplog.set_level(logging.WARNING, logger="softmax_multilabel_layer.data.image_data")
    kept = check_files_exist(parse_image_list(str(source), 5), OWNER, "", skip=True)
    assert [r.getMessage() for r in caplog.records] == [
        "%s: skip_bad_images: left out 2 of 4 images listed in %r whose files do not exist: line 2: "
        "'/nonexistent/a.jpg', line 4: '/nonexistent/b.jpg'" % (OWNER, str(source))]
    assert kept.line_numbers.tolist() == [1, 3] and [v.tolist() for v in kept.labels] == [[1], [3]]
    source.write_text("/nonexistent/a.jpg 2\n")
    with pytest.raises(MultilabelLossError, match="1 of 1 image files"):    # all missing: an error even so
        check_files_exist(parse_image_list(str(source), 5), OWNER, "", skip=True)


def test_list_views_slices_and_nothing_left_out(tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("a.jpg 1 2\nb.jpg\nc.jpg 4:0.5\n")
    full = parse_image_list(str(source), 5)
    assert [v.tolist() for v in full.labels[1:]] == [[], [4]] and [v.tolist() for v in full.values[::2]] == [
        [1.0, 1.0], [0.5]]
    same = full.without([])
    assert list(same.paths) == ["a.jpg", "b.jpg", "c.jpg"] and same.path_buffer == full.path_buffer
    assert same.label_offsets.tolist() == full.label_offsets.tolist() == [0, 2, 2, 3]


def test_decode_threads_are_named(tmp_path):
    source, _ = id_list(tmp_path, n=4)
    reader = ImageBatchReader(options(source, batch_size=2, threads=2))
    try:
        assert [t.name for t in reader._threads] == ["MultilabelImageData-0", "MultilabelImageData-1"]
        assert all(t.daemon for t in reader._threads)
    finally:
        reader.close()


def test_list_image_paths_for_prediction(tmp_path):
    """list_image_paths (predict's reader): paths only, labels ignored, blank and comment lines skipped, TAB
    lines split at the first TAB, root_folder joined to relative paths only; the same paths as the layer's
    parser; an empty list gives no paths; a missing file or an empty path before a TAB is named."""
    from softmax_multilabel_layer.data.image_data import list_image_paths
    source = tmp_path / "list.txt"
    source.write_text("a.jpg 1 2\n\n  # note\n  b c.jpg \t3\t4\n/abs/d.jpg\n#x\te\ne.jpg 0\nX y.jpg\t1\nf.jpg 2\t")
    expected = ["a.jpg", "b c.jpg", "/abs/d.jpg", "e.jpg", "X y.jpg", "f.jpg"]
    assert list_image_paths(str(source)) == expected == list(parse_image_list(str(source), 5).paths)
    assert list_image_paths(str(source), "root") == ["root/" + p if p[0] != "/" else p for p in expected]
    source.write_text("# nothing\n\n")
    assert list_image_paths(str(source)) == []
    with pytest.raises(MultilabelLossError) as err:
        list_image_paths(str(tmp_path / "none.txt"))
    assert str(err.value) == "--list: list file %r not found (working directory %s)" % (str(tmp_path / "none.txt"),
                                                                                        os.getcwd())
    source.write_text("a.jpg\n \t3\n")
    with pytest.raises(MultilabelLossError) as err:
        list_image_paths(str(source), owner="predict")
    assert str(err.value) == "predict: %s:2: empty image path before the TAB" % source


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 8])
def test_list_image_paths_reads_utf8_as_the_layer_does(tmp_path, monkeypatch, chunk_bytes):
    """A byte-order mark opening the list is not part of the first path (in one chunk or cut into several); a
    Latin-1 list is refused naming the encoding, the line and the column, as the layer's parser does."""
    from softmax_multilabel_layer.data.image_data import list_image_paths
    monkeypatch.setattr(image_data, "CHUNK_BYTES", chunk_bytes)
    source = tmp_path / "list.txt"
    source.write_bytes(b"\xef\xbb\xbf" + "ph\u00f6to.jpg 1\nb.jpg\n".encode())
    assert list_image_paths(str(source)) == ["ph\u00f6to.jpg", "b.jpg"] == list(parse_image_list(str(source), 5).paths)
    source.write_bytes("a.jpg 1\n\nphotos/caf\u00e9.jpg 2\n".encode("latin-1"))
    with pytest.raises(MultilabelLossError) as err:
        list_image_paths(str(source))
    assert str(err.value) == ("--list: list file %r is not UTF-8: line 3, column 11 has byte 0xe9 (invalid "
                              "continuation byte); save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
                              % str(source))
    with pytest.raises(MultilabelLossError) as layer:
        parse_image_list(str(source), 5, owner="--list")
    assert str(layer.value) == str(err.value)


def test_first_image_error_names_the_owner(tmp_path):
    paths = write_images(tmp_path / "img", [pattern_image(0, (4, 5))])
    Path(paths[0]).write_bytes(b"junk")
    source = write_list(tmp_path / "list.txt", paths, [[0]])
    with pytest.raises(ImageDecodeError) as err:
        ImageBatchReader(ImageDataOptions(owner="softmax-multilabel convert", source=source, num_classes=5,
                                          batch_size=1, threads=1))
    assert str(err.value) == ("softmax-multilabel convert: cannot read or decode image %r (%s:1): missing, "
                              "unreadable or not an image format OpenCV knows; set --skip-bad-images to replace "
                              "bad images by others" % (paths[0], source))


def test_load_image_and_reader_shard_options_edges(tmp_path):
    """A resize needs both sizes; a message without a list position has no '(...)'; a mean of exactly 1 is
    subtracted; the shard comes from the options when the caller gives none."""
    path = write_images(tmp_path / "img", [pattern_image(0, (5, 7))])[0]
    assert load_image(path).shape == (5, 7, 3) and load_image(path, True, 3, 0).shape == (5, 7, 3)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"junk")
    with pytest.raises(ImageDecodeError) as err:
        load_image(str(junk))
    assert str(err.value) == ("%s: cannot read or decode image %r: missing, unreadable or not an image format "
                              "OpenCV knows" % (OWNER, str(junk)))
    img = load_image(path)
    out = np.empty((3, 5, 7), np.float32)
    Transform(3, mean_value=[1, 0, 2])(img, out, np.random.default_rng(0))
    np.testing.assert_array_equal(out, img.transpose(2, 0, 1).astype(np.float32) - np.array([1, 0, 2],
                                                                                            np.float32)[:, None, None])
    source, _ = id_list(tmp_path, n=4)
    reader = ImageBatchReader(options(source, batch_size=1, threads=1, rank=1, world_size=2))
    reader.close()
    assert (reader.rank, reader.world_size) == (1, 2)


# ---------------------------------------------------------------- edges a wrong implementation gets wrong

def test_missing_opencv_is_named_with_the_install_command(monkeypatch):
    """Without cv2 the error names the module, why the import failed and how to install it."""
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError) as why:
        import cv2 as _  # noqa: F401
    with pytest.raises(MultilabelLossError) as err:
        image_data._cv2()
    assert str(err.value) == ("%s: needs OpenCV's Python module cv2 to decode images (%s); install it with `pip "
                              "install 'opencv-python-headless<4.12'` (make setup does)" % (OWNER, why.value))


def test_next_batch_names_stopped_decode_threads(tmp_path, monkeypatch):
    """Decode threads that exit without finishing the batch: next_batch raises instead of waiting for ever."""
    source, _ = id_list(tmp_path, n=4)
    monkeypatch.setattr(image_data, "_worker", lambda reader, tasks, stop: None)
    monkeypatch.setattr(image_data, "POLL_SECONDS", 0.01)
    reader = ImageBatchReader(options(source, batch_size=2, threads=2))
    outcome: list[BaseException] = []

    def consume():
        try:
            reader.next_batch()
        except BaseException as exc:
            outcome.append(exc)
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(20)
    reader.close()
    assert not consumer.is_alive() and len(outcome) == 1
    assert type(outcome[0]) is MultilabelLossError
    assert str(outcome[0]) == "%s: the decode threads have stopped" % OWNER


def test_a_failed_batch_is_raised_again_and_nothing_more_is_queued(tmp_path):
    """Without skip_bad_images a bad image's batch raises on every later call (not the batch after it), and
    the calls queue no further batches: the reader holds ``prefetch`` batches however often it is called."""
    source, _ = id_list(tmp_path, n=8)
    (tmp_path / "ids" / "img_002.png").write_bytes(b"junk")
    reader = ImageBatchReader(options(source, batch_size=2, shuffle=False, threads=1, prefetch=2))
    try:
        assert decoded_ids(reader.next_batch()[0]) == [0, 1]
        messages = []
        for _ in range(3):
            with pytest.raises(ImageDecodeError) as err:
                reader.next_batch()
            messages.append(str(err.value))
            assert len(reader._inflight) == 2
        assert len(set(messages)) == 1 and "img_002.png" in messages[0]
    finally:
        reader.close()


def test_close_stops_decoding_after_the_image_in_hand(tmp_path, monkeypatch):
    """close(): a decode thread finishes the image it is on and takes no other task (31 are queued)."""
    source, _ = id_list(tmp_path, n=8)
    calls = []
    holder: dict[str, ImageBatchReader] = {}
    ready, decoding = threading.Event(), threading.Event()
    real_load = image_data.load_image

    def load(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            decoding.set()
            assert ready.wait(10)
            assert holder["reader"]._stop.wait(10)
        return real_load(path, *args, **kwargs)
    monkeypatch.setattr(image_data, "load_image", load)
    reader = ImageBatchReader(options(source, batch_size=8, threads=1, prefetch=4, new_height=6, new_width=7))
    holder["reader"] = reader
    ready.set()
    assert decoding.wait(10)
    reader.close()
    assert not reader._threads[0].is_alive()
    assert len(calls) == 1


def test_mirror_is_a_fair_coin_and_only_a_mirror(tmp_path):
    """Over 400 seeded samples about half are mirrored (a fair coin: 200 +- 40, 4 sd), each exactly the image or
    its left-right mirror; grey images too."""
    img = pattern_image(3, (5, 9))
    for image in (img, img[:, :, :1]):
        channels = image.shape[2]
        t = Transform(channels, mirror=True, train=True)
        plain = image.transpose(2, 0, 1).astype(np.float32)
        flipped = 0
        for i in range(400):
            out = t(image, np.empty((channels, 5, 9), np.float32), np.random.default_rng([7, i]))
            if np.array_equal(out, plain[:, :, ::-1]):
                flipped += 1
            else:
                np.testing.assert_array_equal(out, plain)
        assert 160 <= flipped <= 240, flipped


def test_mean_and_scale_are_float32_arithmetic():
    """out = (float32(pixel) - float32(mean)) * float32(scale), bit for bit (Caffe's DataTransformer computes in
    float), over every pixel value, with means that are not exact in float32."""
    img = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, axis=2)
    img[:, :, 1] = img[:, :, 1][::-1]
    mean = [104.1, 116.7, 122.3]
    out = Transform(3, mean_value=mean, scale=0.017, train=False)(img, np.empty((3, 16, 16), np.float32),
                                                                 np.random.default_rng(0))
    expected = ((img.transpose(2, 0, 1).astype(np.float32) - np.array(mean, np.float32)[:, None, None])
                * np.float32(0.017))
    assert out.dtype == np.float32 and np.array_equal(out.view(np.int32), expected.view(np.int32))


def test_resize_needs_both_sizes(tmp_path):
    path = write_images(tmp_path / "img", [pattern_image(0, (5, 7))])[0]
    assert load_image(path, new_height=3).shape == (5, 7, 3)
    assert load_image(path, new_width=3).shape == (5, 7, 3)
    assert load_image(path, new_height=3, new_width=4).shape == (3, 4, 3)
    assert load_image(path, False, new_height=5, new_width=7).shape == (5, 7, 1)


@pytest.mark.parametrize("train", [True, False])
def test_crop_as_wide_as_the_image_with_an_odd_margin(tmp_path, train):
    """A 41x32 image with crop_size 32: no width margin, 9 rows of margin (centre offset 4 in TEST)."""
    img = pattern_image(5, (41, 32))
    paths = write_images(tmp_path / "img", [img])
    source = write_list(tmp_path / "list.txt", paths, [[1]])
    data = read_batches(options(source, batch_size=1, crop_size=32, threads=1), 1, train=train)[0][0]
    rows = img.transpose(2, 0, 1).astype(np.float32)
    offsets = [y for y in range(10) if np.array_equal(data[0], rows[:, y:y + 32, :])]
    assert len(offsets) == 1 and (train or offsets == [4])


def test_owner_is_named_by_every_part_of_the_reader(tmp_path):
    """The owner (here convert) names the errors of the list, its class names, the shard and a bad image."""
    owner = "softmax-multilabel convert"
    source, _ = id_list(tmp_path, n=3)
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg 9\n")
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(ImageDataOptions(owner=owner, source=str(bad), num_classes=5, batch_size=1))
    assert str(err.value).startswith(owner + ": %s:1: label 9 is out of range" % bad)
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(source, class_names=str(tmp_path / "none.txt"), owner=owner)
    assert str(err.value).startswith(owner + ": class_names file ")
    with pytest.raises(MultilabelLossError) as err:
        ImageBatchReader(ImageDataOptions(owner=owner, source=source, num_classes=5, batch_size=1), rank=0,
                         world_size=4)
    assert str(err.value) == owner + ": 3 images cannot be shared among world_size 4 ranks"
    (tmp_path / "ids" / "img_001.png").write_bytes(b"junk")
    reader = ImageBatchReader(ImageDataOptions(owner=owner, source=source, num_classes=5, batch_size=3,
                                               crop_size=4, threads=1), train=False)
    try:
        with pytest.raises(ImageDecodeError) as err:
            reader.next_batch()
    finally:
        reader.close()
    assert str(err.value).startswith(owner + ": cannot read or decode image %r" % str(tmp_path / "ids" / "img_001.png"))


@pytest.mark.parametrize("n", [4, 1000])
def test_only_bad_images_stop_after_the_replacement_limit(tmp_path, n):
    """skip_bad_images with every image bad: the error counts the tries and quotes the last image's error,
    whether that image was met before (4 images) or is decoded for the first time (1000: the draw 51 is new here)."""
    (tmp_path / "ids").mkdir()
    paths = [tmp_path / "ids" / ("img_%03d.png" % i) for i in range(n)]
    for path in paths:
        path.write_bytes(b"junk")
    source = write_list(tmp_path / "ids.txt", paths, [[0]] * n)
    reader = ImageBatchReader(options(source, batch_size=1, threads=1, skip_bad_images=True, new_height=6,
                                      new_width=7))
    try:
        with pytest.raises(ImageDecodeError) as err:
            reader.next_batch()
    finally:
        reader.close()
    message = str(err.value)
    prefix = "%s: %d bad images in a row while replacing one (skip_bad_images); last: " % (
        OWNER, image_data.MAX_REPLACEMENTS + 1)
    assert message.startswith(prefix)
    assert message[len(prefix):] in reader.bad_images.values()


def test_check_files_exist_defaults(tmp_path):
    """Called with the list alone: the layer's name, no root_folder part."""
    from softmax_multilabel_layer.data.image_data import check_files_exist
    source = tmp_path / "list.txt"
    source.write_text("/nonexistent/a.jpg 1\n")
    with pytest.raises(MultilabelLossError) as err:
        check_files_exist(parse_image_list(str(source), 5))
    assert str(err.value) == ("%s: 1 of 1 image files listed in %r do not exist: line 1: '/nonexistent/a.jpg'"
                              % (OWNER, str(source)))


def test_list_messages_exactly(tmp_path, monkeypatch):
    """A missing list, a class count that disagrees with the class_names file, and a chunk of class-name
    lines without labels."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list("nope.txt", 5)
    assert str(err.value) == "%s: list file 'nope.txt' not found (working directory %s)" % (OWNER, tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    source = tmp_path / "list.txt"
    source.write_text("a.jpg\nb.jpg\n")
    with pytest.raises(MultilabelLossError) as err:
        parse_image_list(str(source), 3, class_names=str(names))
    assert str(err.value) == "%s: num_classes is 3 but class_names file %r has 2 names" % (OWNER, str(names))
    got = parse_image_list(str(source), class_names=str(names))
    assert [v.tolist() for v in got.labels] == [[], []] and got.label_indices.dtype == np.int32


def test_close_gives_up_on_a_decode_that_hangs(tmp_path, monkeypatch):
    """A decode thread stuck in a read (a hung network file system) does not hang close(): it waits
    JOIN_SECONDS for each thread, then returns; the thread ends when its read does."""
    source, _ = id_list(tmp_path, n=2)
    decoding, release = threading.Event(), threading.Event()
    real_load = image_data.load_image

    def load(path, *args, **kwargs):
        decoding.set()
        release.wait(10)
        return real_load(path, *args, **kwargs)
    monkeypatch.setattr(image_data, "load_image", load)
    monkeypatch.setattr(image_data, "JOIN_SECONDS", 0.05)
    reader = ImageBatchReader(options(source, batch_size=1, threads=1, new_height=6, new_width=7))
    assert decoding.wait(10)
    reader.close()
    stuck = reader._threads[0].is_alive()
    release.set()
    reader._threads[0].join(10)
    assert stuck and not reader._threads[0].is_alive()
