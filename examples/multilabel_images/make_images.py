#!/usr/bin/env python
"""Write the multi-label digits canvases as JPEG files with list files, for MultilabelImageDataLayer.

Each image is a 32x32 greyscale canvas with 1 to 3 real 8x8 digit scans of distinct
classes (the same composition as examples/multilabel_digits, train and test drawn from
disjoint scan pools). Written to OUT:

  train/00000.jpg ...      test/00000.jpg ...
  train.txt, test.txt      one image a line: path, then class names ("seven three")
  class_names.txt          zero .. nine, one a line (line i is class i)

Deterministic in --seed.
"""
import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.data import digits as digits_data

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_split(out: str, name: str, arrays: Mapping[str, NDArray[Any]]) -> int:
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    lines = ["# %s split: path, then the class names of the digits on the canvas\n" % name]
    for i, (img, label) in enumerate(zip(arrays["data"], arrays["label"], strict=True)):
        path = os.path.join(name, "%05d.jpg" % i)
        pixels = np.clip(np.rint(img[0] * 255), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(out, path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines.append("%s %s\n" % (path, " ".join(CLASS_NAMES[c] for c in np.flatnonzero(label))))
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.writelines(lines)
    return len(arrays["data"])


def make_images(out: str, n_train: int = 4000, n_test: int = 1000, seed: int = 0,
                canvas: tuple[int, int] = (32, 32), n_val: int = 0) -> dict[str, int]:
    """Write the train and test splits (and a val split of n_val canvases when n_val > 0: new canvases of the
    training scans, for calibrating thresholds; the test scans stay held out)."""
    os.makedirs(out, exist_ok=True)
    scans, targets = digits_data.load_scans()
    train_pool, test_pool = digits_data.split_scans(targets, 0.3, seed)
    counts: dict[str, int] = {}
    splits = [("train", train_pool, n_train), ("test", test_pool, n_test)] + ([("val", train_pool, n_val)]
                                                                             if n_val > 0 else [])
    for split_no, (name, pool, n) in enumerate(splits):
        arrays = digits_data.compose(scans, targets, pool, n, np.random.default_rng([seed, split_no]), canvas)
        counts[name] = write_split(out, name, arrays)
    with open(os.path.join(out, "class_names.txt"), "w") as f:
        f.write("\n".join(CLASS_NAMES) + "\n")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="output/multilabel_images")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=500, help="validation canvases (of the training scans; default 500)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts = make_images(args.out, args.n_train, args.n_test, args.seed, n_val=args.n_val)
    print("wrote %d train, %d val and %d test JPEGs with list files to %s"
          % (counts["train"], counts.get("val", 0), counts["test"], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
