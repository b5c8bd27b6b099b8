"""Data: image lists, decoding and transforms, the Caffe image data layer, converters and HDF5 labels.

``module: "softmax_multilabel_layer.data" layer: "MultilabelImageDataLayer"`` in a prototxt keeps working:
the layer class is resolved from :mod:`.layer` on first access, so importing this package (for example
for :mod:`.image_data` or :mod:`.convert`) needs no Caffe.
"""
from typing import Any as _Any

# The same few lines as the package root's lazy layer classes: a module-level __getattr__ (PEP 562) serves only
# the module that defines it, so each package that resolves a Caffe class lazily has its own.
_LAZY = {"MultilabelImageDataLayer": "layer"}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
