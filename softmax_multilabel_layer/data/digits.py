"""Multi-label digit canvases: 1 to 3 real 8x8 digit scans of distinct classes on a canvas.

A small real-image multi-label data set for examples and tests (the digits demo, the image-list example and the
transfer example use it). Source images are scikit-learn's ``load_digits`` (1,797 real 8x8 scans, values
0..16), split into train and test pools *first* (:func:`split_scans`, stratified by class) so that no scan is
used on both sides. :func:`compose` then builds each example: a number of digits k uniformly from
1..max_digits, k distinct classes, one scan of each class from the pool, pasted at random non-overlapping
positions on a zero canvas. Everything is a deterministic function of the seed and the sizes.

Example::

    scans, targets = load_scans()
    train_pool, test_pool = split_scans(targets, 0.3, seed=0)
    arrays = compose(scans, targets, train_pool, 1000, np.random.default_rng(0))
    arrays["data"].shape, arrays["label"].shape          # (1000, 1, 24, 24), (1000, 10)

Needs scikit-learn (imported when called).
"""
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DIGIT_SIZE", "NUM_CLASSES", "compose", "load_scans", "split_scans"]

NUM_CLASSES = 10
DIGIT_SIZE = 8


def load_scans() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Return (images float32 N x 8 x 8 in [0, 1], targets int N)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def split_scans(targets: NDArray[np.int64], test_fraction: float,
                seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Stratified split of scan indices -> (train_idx, test_idx), sorted, disjoint."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(targets))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=targets)
    return np.sort(train_idx), np.sort(test_idx)


def _place_boxes(k: int, canvas: tuple[int, int], rng: np.random.Generator,
                 max_tries: int = 200) -> list[tuple[int, int]]:
    """k non-overlapping DIGIT_SIZE boxes in canvas -> list of (row, col) top-left corners."""
    h, w = canvas
    while True:
        boxes: list[tuple[int, int]] = []
        for _ in range(max_tries):
            r = int(rng.integers(0, h - DIGIT_SIZE + 1))
            c = int(rng.integers(0, w - DIGIT_SIZE + 1))
            if all(abs(r - r2) >= DIGIT_SIZE or abs(c - c2) >= DIGIT_SIZE for r2, c2 in boxes):
                boxes.append((r, c))
                if len(boxes) == k:
                    return boxes
        # Unlucky first placements left no room: start over (rare on 24x24).


def compose(images: NDArray[np.float32], targets: NDArray[np.int64], pool: NDArray[np.int64], n: int,
            rng: np.random.Generator, canvas: tuple[int, int] = (24, 24), max_digits: int = 3,
            progress: Callable[[int, int], None] | None = None) -> dict[str, NDArray[Any]]:
    """Compose n examples from the scans in ``pool`` (indices into images/targets).

    Args:
        images, targets: from :func:`load_scans`.
        pool: the scan indices to draw from (one side of :func:`split_scans`); every class needs one.
        n: examples to make.
        rng: the random generator (the only source of randomness).
        canvas: (H, W), at least 8 x 8.
        max_digits: the largest number of digits on a canvas.
        progress: called as progress(done, n) four times.

    Returns:
        ``data`` N x 1 x H x W float32 in [0, 1], ``label`` N x 10 float32 multi-hot, ``scan_index``
        N x max_digits (the scan of each placed digit, -1 = none) and ``position`` N x max_digits x 2 (its
        top-left corner, -1 = none).
    """
    h, w = canvas
    if h < DIGIT_SIZE or w < DIGIT_SIZE:
        raise ValueError("canvas smaller than a digit")
    by_class = [pool[targets[pool] == c] for c in range(NUM_CLASSES)]
    if any(len(p) == 0 for p in by_class):
        raise ValueError("every class needs at least one scan in the pool")
    data = np.zeros((n, 1, h, w), np.float32)
    label = np.zeros((n, NUM_CLASSES), np.float32)
    scan_index = np.full((n, max_digits), -1, np.int64)
    position = np.full((n, max_digits, 2), -1, np.int64)
    step = max(1, n // 4)
    for i in range(n):
        k = int(rng.integers(1, max_digits + 1))
        classes = rng.choice(NUM_CLASSES, size=k, replace=False)
        for j, (cls, (r, c)) in enumerate(zip(classes, _place_boxes(k, canvas, rng), strict=True)):
            s = int(rng.choice(by_class[cls]))
            data[i, 0, r:r + DIGIT_SIZE, c:c + DIGIT_SIZE] = images[s]
            label[i, cls] = 1.0
            scan_index[i, j] = s
            position[i, j] = (r, c)
        if progress is not None and ((i + 1) % step == 0 or i + 1 == n):
            progress(i + 1, n)
    return {"data": data, "label": label, "scan_index": scan_index, "position": position}
