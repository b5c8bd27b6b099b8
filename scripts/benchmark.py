#!/usr/bin/env python
"""make bench: the loss layers, the metrics and the image data layer against their references, on the CPU.

The entry point of ``make bench``. Each comparison (an anchor) is its own module under ``scripts/bench/``,
behind the shared harness ``scripts/bench/harness.py`` (its docstring says how to add an anchor):

* ``losses`` (``bench/losses.py``): the loss layers in a ``caffe.Net`` against Caffe's C++ losses, the 2018
  blog layer and a numpy floor, per thread setting and SIMD dispatch; writes ``benchmark.md`` / ``.json``;
* ``metrics`` (``bench/metrics.py``): our metrics against scikit-learn, time and peak memory; appended to
  ``benchmark.md`` / ``.json``;
* ``image_data`` (``bench/image_data.py``): our image data layer against Caffe's ``ImageData``; writes
  ``image_data.md`` / ``.json``;
* ``image_list`` (``bench/image_list.py``): parsing a large list file (lines/s, bytes of memory per line)
  against Caffe's ``ImageData`` set-up; ``--list-lines`` (default 1M; ``1M,10M``); writes ``image_list.md`` /
  ``.json``.

``--anchors`` picks some of them (default all, in this order); ``--out`` is the folder (``output/bench``).
"""
from bench import harness, image_data, image_list, losses, metrics, train_e2e

ANCHORS = [losses, metrics, image_data, image_list, train_e2e]


def main(argv: list[str] | None = None) -> None:
    """Run the anchors that ``argv`` selects (all by default)."""
    harness.main(ANCHORS, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
