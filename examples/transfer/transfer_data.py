"""Data of the transfer experiment: noisy hashtag-like tags on digit canvases, and probe sets.

The canvases are the digits demo's (``examples/multilabel_digits/digits_data.py``: 1 to 3
real 8x8 scans of distinct classes on 24x24, scans split into disjoint pools first). This
module adds, on top of them:

* a **tag vocabulary** of 148 tags that co-occur and vary in frequency, as hashtags do:
  ``digit:d`` (10, one per class present), ``digit:d@r,c`` (90: digit d whose centre lies
  in cell (r, c) of a 3x3 grid; the border cells are rarer than the middle ones),
  ``pair:a+b`` (45: digits a and b on the same canvas) and ``count:k`` (k digits, 3 tags);
* a **noise model** like the hashtag setting of Mahajan et al. (2018): every true tag is
  dropped with probability ``drop`` (0.4) and ``Poisson(add_per_image)`` (0.3) wrong tags
  are added per image, drawn from the tags the image does not have, in proportion to
  their clean frequency (popular tags are the ones misused);
* **probe sets** for the downstream task (single-digit classification) from scans the
  pretraining never saw: each held-out scan alone on a canvas at a random position;
  up to ``max_shots`` scans per class for the probe's training side, the rest for its test
  side (placed ``test_positions`` times each).

Everything is a deterministic function of the seeds and the sizes.
"""
import os

import h5py
import numpy as np

from softmax_multilabel_layer.data import digits as digits_data
from softmax_multilabel_layer.data.digits import DIGIT_SIZE, NUM_CLASSES

GRID = 3            # digit x position tags: 3 x 3 cells of the canvas
MAX_DIGITS = 3
CANVAS = (24, 24)


def tag_names(max_digits=MAX_DIGITS):
    """The tag vocabulary, in column order of the tag matrices."""
    names = ["digit:%d" % d for d in range(NUM_CLASSES)]
    names += ["digit:%d@%d,%d" % (d, r, c) for d in range(NUM_CLASSES)
              for r in range(GRID) for c in range(GRID)]
    names += ["pair:%d+%d" % (a, b) for a in range(NUM_CLASSES) for b in range(a + 1, NUM_CLASSES)]
    names += ["count:%d" % k for k in range(1, max_digits + 1)]
    return names


def grid_cell(corner, size):
    """Cell (0..GRID-1) of a digit whose top-left corner is at ``corner`` along an axis of ``size``."""
    centre = np.asarray(corner) + DIGIT_SIZE / 2.0
    return np.minimum(GRID - 1, (centre * GRID // size).astype(np.int64))


def clean_tags(scan_index, position, targets, canvas=CANVAS, max_digits=MAX_DIGITS):
    """True tags of composed canvases.

    Args:
        scan_index: N x max_digits indices into ``targets`` (-1 = no digit), from
            ``digits_data.compose``.
        position: N x max_digits x 2 top-left corners (row, col).
        targets: class of every scan.
    Returns:
        N x T float32 multi-hot, T = len(tag_names(max_digits)).
    """
    n = len(scan_index)
    pair_col: dict[tuple[int, int], int] = {}
    base = NUM_CLASSES * (1 + GRID * GRID)
    for a in range(NUM_CLASSES):
        for b in range(a + 1, NUM_CLASSES):
            pair_col[a, b] = base + len(pair_col)
    count_base = base + len(pair_col)
    tags = np.zeros((n, count_base + max_digits), np.float32)
    for i in range(n):
        placed = scan_index[i] >= 0
        classes = targets[scan_index[i][placed]]
        rows = grid_cell(position[i][placed, 0], canvas[0])
        cols = grid_cell(position[i][placed, 1], canvas[1])
        for d, r, c in zip(classes, rows, cols, strict=True):
            tags[i, d] = 1.0
            tags[i, NUM_CLASSES + d * GRID * GRID + r * GRID + c] = 1.0
        for j, a in enumerate(classes):
            for b in classes[j + 1:]:
                tags[i, pair_col[min(a, b), max(a, b)]] = 1.0
        tags[i, count_base + len(classes) - 1] = 1.0
    return tags


def add_noise(tags, rng, drop=0.4, add_per_image=0.3, popularity=None):
    """Hashtag-like noise: drop true tags, add wrong ones.

    Args:
        tags: N x T clean multi-hot.
        rng: ``numpy.random.Generator``.
        drop: probability that each true tag is left out.
        add_per_image: mean of the Poisson number of wrong tags added to an image.
        popularity: T weights for choosing wrong tags (default: the clean tag counts
            of ``tags``, plus one).
    Returns:
        N x T float32 noisy multi-hot. A wrong tag is one the image does not truly
        have; an image never gets more wrong tags than it lacks.
    """
    tags = np.asarray(tags) > 0.5
    if popularity is None:
        popularity = tags.sum(axis=0) + 1.0
    popularity = np.asarray(popularity, dtype=np.float64)
    noisy = tags & (rng.random(tags.shape) >= drop)
    n_add = rng.poisson(add_per_image, size=len(tags))
    for i in np.nonzero(n_add)[0]:
        wrong = np.nonzero(~tags[i])[0]
        k = min(int(n_add[i]), len(wrong))
        p = popularity[wrong] / popularity[wrong].sum()
        noisy[i, rng.choice(wrong, size=k, replace=False, p=p)] = True
    return noisy.astype(np.float32)


def noise_rates(clean, noisy):
    """Measured noise: (fraction of true tags dropped, wrong tags added per image)."""
    clean, noisy = np.asarray(clean) > 0.5, np.asarray(noisy) > 0.5
    return (1.0 - (clean & noisy).sum() / clean.sum(), float((noisy & ~clean).sum()) / len(clean))


def split_pretrain_heldout(targets, heldout_fraction, seed):
    """Scan indices -> (pretraining pool, held-out pool): the demo's stratified split."""
    return digits_data.split_scans(targets, heldout_fraction, seed)


def make_pretraining(images, targets, pool, n, rng, drop=0.4, add_per_image=0.3):
    """n canvases from ``pool`` with clean and noisy tags -> dict of arrays.

    Keys: data (N x 1 x 24 x 24), clean, noisy (N x T), scan_index, position.
    """
    arrays = digits_data.compose(images, targets, pool, n, rng, CANVAS, MAX_DIGITS)
    arrays.pop("label")
    arrays["clean"] = clean_tags(arrays["scan_index"], arrays["position"], targets)
    arrays["noisy"] = add_noise(arrays["clean"], rng, drop, add_per_image)
    return arrays


def place_single(images, scans, rng, copies=1):
    """Every scan alone on a canvas at ``copies`` random positions -> (N x 1 x 24 x 24, scan per row)."""
    scans = np.repeat(np.asarray(scans), copies)
    data = np.zeros((len(scans), 1) + CANVAS, np.float32)
    rows = rng.integers(0, CANVAS[0] - DIGIT_SIZE + 1, size=len(scans))
    cols = rng.integers(0, CANVAS[1] - DIGIT_SIZE + 1, size=len(scans))
    for i, (s, r, c) in enumerate(zip(scans, rows, cols, strict=True)):
        data[i, 0, r:r + DIGIT_SIZE, c:c + DIGIT_SIZE] = images[s]
    return data, scans


def probe_split(targets, pool, max_shots, rng):
    """Held-out scans -> (probe-train scans: max_shots per class, class-major; probe-test scans)."""
    train, test = [], []
    for c in range(NUM_CLASSES):
        of_class = rng.permutation(pool[targets[pool] == c])
        if len(of_class) <= max_shots:
            raise ValueError("probe_split: class %d has %d held-out scans, need more than max_shots=%d; "
                             "raise --heldout-fraction or lower the shot counts"
                             % (c, len(of_class), max_shots))
        train.append(of_class[:max_shots])
        test.append(of_class[max_shots:])
    return np.concatenate(train), np.sort(np.concatenate(test))


def shot_subsets(max_shots, shots, draws, rng):
    """Row indices into the class-major probe-train set: ``draws`` subsets of ``shots`` per class.

    With shots == max_shots there is only one subset (all of them).
    """
    if shots == max_shots:
        return [np.arange(NUM_CLASSES * max_shots)]
    return [np.concatenate([c * max_shots + rng.choice(max_shots, shots, replace=False)
                            for c in range(NUM_CLASSES)]) for _ in range(draws)]


def make_data(out_dir, n_train=9600, n_val=1000, n_tag_test=2000, seed=0, heldout_fraction=0.5,
              max_shots=50, test_positions=4, drop=0.4, add_per_image=0.3):
    """Everything the experiment reads -> summary dict; writes out_dir/pretrain.h5 and its list file.

    pretrain.h5 (for Caffe's HDF5Data; a net's label top is named ``clean`` or ``noisy``):
    data, clean, noisy, and scan_index (bookkeeping). The other sets stay in memory (returned under "arrays"):
    val (pretraining pool, for the learning-rate choice: data, clean, noisy),
    tag_test (held-out scans, clean tags), probe_train / probe_test (held-out scans, one
    digit per canvas: data, label = class).
    """
    os.makedirs(out_dir, exist_ok=True)
    images, targets = digits_data.load_scans()
    pre_pool, held_pool = split_pretrain_heldout(targets, heldout_fraction, seed)
    # independent streams per set: one set does not depend on another's size
    train = make_pretraining(images, targets, pre_pool, n_train, np.random.default_rng([seed, 10]),
                             drop, add_per_image)
    val = make_pretraining(images, targets, pre_pool, n_val, np.random.default_rng([seed, 11]),
                           drop, add_per_image)
    tag_test = make_pretraining(images, targets, held_pool, n_tag_test, np.random.default_rng([seed, 12]),
                                drop, add_per_image)
    rng = np.random.default_rng([seed, 13])
    probe_train_scans, probe_test_scans = probe_split(targets, held_pool, max_shots, rng)
    x_tr, s_tr = place_single(images, probe_train_scans, rng)
    x_te, s_te = place_single(images, probe_test_scans, rng, test_positions)
    h5_path = os.path.abspath(os.path.join(out_dir, "pretrain.h5"))
    with h5py.File(h5_path, "w") as f:
        for key in ("data", "clean", "noisy", "scan_index"):    # HDF5Data reads only its tops
            f.create_dataset(key, data=train[key])
    list_path = os.path.abspath(os.path.join(out_dir, "pretrain_list.txt"))
    with open(list_path, "w") as f:
        f.write(h5_path + "\n")
    dropped, added = noise_rates(train["clean"], train["noisy"])
    clean_freq = train["clean"].mean(axis=0)
    return {
        "seed": seed,
        "tags": len(tag_names()),
        "h5_file": h5_path,
        "list_file": list_path,
        "scans": {"pretraining_pool": int(len(pre_pool)), "heldout_pool": int(len(held_pool)),
                  "probe_train": int(len(probe_train_scans)), "probe_test": int(len(probe_test_scans))},
        "sizes": {"pretrain": n_train, "val": n_val, "tag_test": n_tag_test,
                  "probe_train": int(len(x_tr)), "probe_test": int(len(x_te))},
        "noise": {"drop": drop, "add_per_image": add_per_image,
                  "measured_drop": float(dropped), "measured_added_per_image": added,
                  "images_without_tags": {c: int((train[c].sum(axis=1) == 0).sum()) for c in ("clean", "noisy")},
                  "tags_per_image": {c: float(train[c].sum(axis=1).mean()) for c in ("clean", "noisy")}},
        "tag_frequency": {"min": float(clean_freq.min()), "median": float(np.median(clean_freq)),
                          "max": float(clean_freq.max())},
        "arrays": {"val": val, "tag_test": tag_test,
                   "probe_train": {"data": x_tr, "label": targets[s_tr], "scan": s_tr},
                   "probe_test": {"data": x_te, "label": targets[s_te], "scan": s_te}},
    }
