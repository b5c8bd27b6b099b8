"""Multi-label loss layers for Caffe: softmax with 1/M targets, sigmoid BCE and focal, ZLPR, the two-way loss.

The numpy core (:mod:`.functional`) has no Caffe import; the Caffe layers live
in :mod:`.layers`, referenced from a prototxt as
``python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer" }``.
``module: "softmax_multilabel_layer"`` works too: the layer classes are
resolved from :mod:`.layers` on first access (a module-level ``__getattr__``),
so importing the package itself still needs no Caffe.
"""
from typing import Any as _Any

from softmax_multilabel_layer.losses.functional import (
    Workspace,
    sigmoid_multilabel_backward,
    sigmoid_multilabel_forward,
    sigmoid_multilabel_loss,
    sigmoid_probabilities,
    softmax_multilabel_backward,
    softmax_multilabel_forward,
    softmax_multilabel_loss,
    softmax_probabilities,
    two_way_backward,
    two_way_forward,
    two_way_loss,
    zlpr_backward,
    zlpr_forward,
    zlpr_loss,
    zlpr_probabilities,
)
from softmax_multilabel_layer.params import (
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    TwoWayOptions,
    ZLPROptions,
)

# The names re-exported from .functional and .params, and Model (lazy, no Caffe import). The layer classes
# (_LAZY below) are left out, so that `from softmax_multilabel_layer import *` still needs no Caffe.
__all__ = [
    "Model",
    "MultilabelLossError",
    "SigmoidOptions",
    "SoftmaxOptions",
    "Workspace",
    "sigmoid_multilabel_backward",
    "sigmoid_multilabel_forward",
    "sigmoid_multilabel_loss",
    "sigmoid_probabilities",
    "softmax_multilabel_backward",
    "softmax_multilabel_forward",
    "softmax_multilabel_loss",
    "softmax_probabilities",
    "TwoWayOptions",
    "two_way_backward",
    "two_way_forward",
    "two_way_loss",
    "ZLPROptions",
    "zlpr_backward",
    "zlpr_forward",
    "zlpr_loss",
    "zlpr_probabilities",
]

__version__ = "0.1.0"

# Names that need Caffe (or, for Model, load the evaluation room), resolved lazily: name -> submodule that defines it.
_LAZY = {"SoftmaxMultilabelLossLayer": "losses.layers", "SigmoidMultilabelLossLayer": "losses.layers",
         "ZLPRLossLayer": "losses.layers", "TwoWayLossLayer": "losses.layers", "Model": "evaluation.model"}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
