"""Multi-label digits: 1 to 3 real 8x8 digit scans of distinct classes on a canvas.

Source images are sklearn's ``load_digits`` (1,797 real 8x8 scans, values 0..16).
The scans are split into train and test pools *first* (stratified by class), so no
scan is ever used on both sides. Each composite example then picks a number of digits
k uniformly from 1..max_digits, k distinct classes, one scan of each class from the
pool, and pastes them at random non-overlapping positions on a zero canvas.

Written per split (HDF5, float32, what Caffe's HDF5Data layer reads):
  data        N x 1 x H x W   pixel values scaled to [0, 1]
  label       N x 10          multi-hot
plus bookkeeping datasets HDF5Data ignores:
  scan_index  N x max_digits  index into load_digits() of each placed scan, -1 = none
  position    N x max_digits x 2  (row, col) of each placed scan's top-left corner, -1 = none
and a list file (one .h5 path per line) for HDF5Data's ``source``.

Everything is a deterministic function of the seed and the sizes.
"""
import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.data.digits import DIGIT_SIZE, NUM_CLASSES, compose, load_scans, split_scans

__all__ = ["DIGIT_SIZE", "NUM_CLASSES", "compose", "load_scans", "split_scans", "make_dataset"]


def write_split(out_dir: str, name: str, arrays: Mapping[str, NDArray[Any]]) -> str:
    """Write <name>.h5 and <name>_list.txt (absolute .h5 path) -> list file path."""
    h5_path = os.path.abspath(os.path.join(out_dir, name + ".h5"))
    with h5py.File(h5_path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    list_path = os.path.join(out_dir, name + "_list.txt")
    with open(list_path, "w") as f:
        f.write(h5_path + "\n")
    return list_path


def cardinality_histogram(label: NDArray[np.float32]) -> dict[int, int]:
    counts = label.sum(axis=1).astype(int)
    return {int(k): int((counts == k).sum()) for k in range(0, int(counts.max()) + 1)}


def make_dataset(out_dir: str, n_train: int = 9600, n_test: int = 2000, seed: int = 0,
                 canvas: tuple[int, int] = (24, 24), max_digits: int = 3, test_fraction: float = 0.3,
                 log: Callable[[str], object] = print) -> dict[str, Any]:
    """Generate both splits into out_dir; returns the summary dict (also in summary.json)."""
    os.makedirs(out_dir, exist_ok=True)
    images, targets = load_scans()
    train_pool, test_pool = split_scans(targets, test_fraction, seed)
    summary: dict[str, Any] = {"seed": seed, "canvas": list(canvas), "max_digits": max_digits,
               "source_scans": {"total": int(len(targets)), "train": int(len(train_pool)),
                                "test": int(len(test_pool))},
               "splits": {}}
    # Independent, seed-derived streams per split: test data does not depend on n_train.
    for split_no, (name, pool, n) in enumerate((("train", train_pool, n_train),
                                                ("test", test_pool, n_test))):
        rng = np.random.default_rng([seed, split_no])

        def progress(done: int, total: int, name: str = name) -> None:
            log("  %-5s %6d/%d examples" % (name, done, total))

        arrays = compose(images, targets, pool, n, rng, canvas, max_digits, progress)
        list_path = write_split(out_dir, name, arrays)
        summary["splits"][name] = {
            "examples": int(n),
            "list_file": os.path.abspath(list_path),
            "h5_file": os.path.abspath(os.path.join(out_dir, name + ".h5")),
            "distinct_scans_used": int(len(np.unique(arrays["scan_index"][arrays["scan_index"] >= 0]))),
            "cardinality_histogram": cardinality_histogram(arrays["label"]),
            "per_class_positives": [int(x) for x in arrays["label"].sum(axis=0)],
        }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    s = summary["source_scans"]
    lines = ["Source scans: %d (train pool %d, test pool %d, disjoint)"
             % (s["total"], s["train"], s["test"]),
             "Canvas %dx%d, 1..%d digits per example, seed %d"
             % (summary["canvas"][0], summary["canvas"][1], summary["max_digits"], summary["seed"])]
    for name, sp in summary["splits"].items():
        hist = sp["cardinality_histogram"]
        hist_txt = ", ".join("%s digit%s: %d" % (k, "" if int(k) == 1 else "s", v)
                             for k, v in hist.items() if int(k) > 0)
        lines.append("%-5s %6d examples from %d distinct scans | %s"
                     % (name, sp["examples"], sp["distinct_scans_used"], hist_txt))
        lines.append("      positives per class: %s" % sp["per_class_positives"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="output/digits/data")
    p.add_argument("--n-train", type=int, default=9600)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", type=int, nargs=2, default=(24, 24), metavar=("H", "W"))
    args = p.parse_args(argv)
    summary = make_dataset(args.out, args.n_train, args.n_test, args.seed, tuple(args.canvas))
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
