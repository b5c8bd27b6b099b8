"""Which optional features the Caffe that ``import caffe`` finds was built with.

A Caffe build may leave out Python layers (``WITH_PYTHON_LAYER``), OpenCV
(``USE_OPENCV``: the ``ImageData`` and ``WindowData`` layers,
``convert_imageset``), LMDB (``USE_LMDB``) and LevelDB (``USE_LEVELDB``): the
two database back-ends of the ``Data`` layer. The Caffe that ``make setup``
builds has all four. With ``USE_SYSTEM_CAFFE=1`` the set-up prints this report,
and tests that need a missing feature are skipped with its reason.

Python layers and OpenCV show in ``caffe.layer_type_list()``. The database
back-ends register no layer type of their own, so they are read from the
shared libraries the process has loaded once pycaffe is imported
(``/proc/self/maps``: ``liblmdb``, ``libleveldb``), which is what the Caffe
library was linked against.

Run ``python -m softmax_multilabel_layer.caffe_features`` for the report.
"""
from __future__ import annotations

import os
import sys
from typing import Dict

#: feature name -> what needs it, for messages.
FEATURES: Dict[str, str] = {
    "python_layers": "Python layers (WITH_PYTHON_LAYER := 1): every layer of this project",
    "opencv": "OpenCV (USE_OPENCV := 1): ImageData and WindowData layers, convert_imageset",
    "lmdb": "LMDB (USE_LMDB := 1): Data layers with backend: LMDB, convert_imageset's default output",
    "leveldb": "LevelDB (USE_LEVELDB := 1): Data layers with backend: LEVELDB",
}


def _loaded_libraries() -> str:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return maps.read()
    except OSError:
        return ""


def caffe_features() -> Dict[str, bool]:
    """Return ``{feature: present}`` for the Caffe that ``import caffe`` finds.

    Raises:
        ImportError: pycaffe cannot be imported.

    Example::

        >>> caffe_features()["opencv"]
        True
    """
    import caffe

    layers = set(caffe.layer_type_list())
    maps = _loaded_libraries()
    return {
        "python_layers": "Python" in layers,
        "opencv": "ImageData" in layers,
        "lmdb": "liblmdb" in maps,
        "leveldb": "libleveldb" in maps,
    }


def report() -> str:
    """One line per feature, ``yes`` or ``NO`` with what it is needed for."""
    import caffe

    found = caffe_features()
    lines = ["Caffe at %s:" % os.path.dirname(caffe.__file__)]
    for name, what in FEATURES.items():
        lines.append("  %-13s %s  (%s)" % (name, "yes" if found[name] else "NO ", what))
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        print(report())
    except ImportError as exc:
        print("import caffe failed: %s" % exc, file=sys.stderr)
        sys.exit(1)
