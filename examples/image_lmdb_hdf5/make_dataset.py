"""Build the classic Caffe multi-label recipe on a tiny generated data set.

Images go into an LMDB written by Caffe's own ``convert_imageset`` (read by a
``Data`` layer); their multi-hot labels go into an HDF5 file (read by an
``HDF5Data`` layer). Both layers read in the same order (no shuffling), so row
i of the labels belongs to image i. ``prototxt/image_lmdb_hdf5/`` trains
``SoftmaxMultilabelLossLayer`` on the two.

    .venv/bin/python examples/image_lmdb_hdf5/make_dataset.py OUT_DIR
    cd OUT_DIR && /path/to/repo/.venv/bin/caffe train --solver solver.prototxt

It copies the recipe's ``solver.prototxt`` and ``train.prototxt`` into OUT_DIR (Caffe reads the solver's
``net:`` and the data sources relative to the folder it runs in) and prints that command.

The images are 16x16 colour PNGs; class c (0..3) lights up quadrant c in
colour c, so an image's label set can be read off its pixels. The data set is a
stand-in for your own images: the commands are the ones you would run on them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
from PIL import Image

NUM_CLASSES = 4
SIZE = 16
# Colour of each class's quadrant (RGB), and the quadrant's (row, col) corner.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
CORNERS = [(0, 0), (0, 8), (8, 0), (8, 8)]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_images(out_dir: str, count: int, seed: int = 0) -> np.ndarray:
    """Write ``count`` PNGs ``img_XXXX.png`` and ``images.txt`` (``path 0`` lines,
    the label ``convert_imageset`` wants and the Data layer's ignored second top).
    Returns the N x C multi-hot labels in list order."""
    rng = np.random.RandomState(seed)
    labels = np.zeros((count, NUM_CLASSES), np.float32)
    with open(os.path.join(out_dir, "images.txt"), "w") as listing:
        for i in range(count):
            present = rng.rand(NUM_CLASSES) < 0.4
            if not present.any():
                present[rng.randint(NUM_CLASSES)] = True
            labels[i] = present
            image = rng.randint(0, 40, size=(SIZE, SIZE, 3)).astype(np.uint8)
            for c in np.flatnonzero(present):
                r, q = CORNERS[c]
                image[r:r + 8, q:q + 8] = COLOURS[c]
            name = "img_%04d.png" % i
            Image.fromarray(image).save(os.path.join(out_dir, name))
            listing.write("%s 0\n" % name)
    return labels


def write_labels_h5(out_dir: str, labels: np.ndarray) -> None:
    """``labels.h5`` (dataset ``label``, N x C float32) and ``labels_h5.txt``, its list file."""
    with h5py.File(os.path.join(out_dir, "labels.h5"), "w") as f:
        f.create_dataset("label", data=labels.astype(np.float32))
    with open(os.path.join(out_dir, "labels_h5.txt"), "w") as listing:
        listing.write(os.path.join(os.path.abspath(out_dir), "labels.h5") + "\n")


def convert_imageset(out_dir: str, tool: str = os.path.join(REPO, ".venv", "bin", "convert_imageset")) -> None:
    """Caffe's ``convert_imageset`` over ``images.txt`` into ``images_lmdb`` (in list order)."""
    subprocess.run([tool, "--backend=lmdb", "--shuffle=false", out_dir + "/", os.path.join(out_dir, "images.txt"),
                    os.path.join(out_dir, "images_lmdb")], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--count", type=int, default=512)
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    labels = make_images(args.out_dir, args.count)
    write_labels_h5(args.out_dir, labels)
    convert_imageset(args.out_dir)
    for name in ("solver.prototxt", "train.prototxt"):
        shutil.copyfile(os.path.join(REPO, "prototxt", "image_lmdb_hdf5", name), os.path.join(args.out_dir, name))
    print("wrote %d images to %s/images_lmdb and their labels to %s/labels.h5"
          % (args.count, args.out_dir, args.out_dir))
    print("train: cd %s && %s train --solver solver.prototxt"
          % (args.out_dir, os.path.join(REPO, ".venv", "bin", "caffe")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
