"""Multi-label loss layers for Caffe: softmax with 1/M targets, sigmoid BCE and focal.

The numpy core (:mod:`.functional`) has no Caffe import; the Caffe layers live
in :mod:`.layers`, referenced from a prototxt as
``python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer" }``.
"""
from .functional import (Workspace, sigmoid_multilabel_backward, sigmoid_multilabel_forward,
                         sigmoid_multilabel_loss, sigmoid_probabilities, softmax_multilabel_backward, softmax_multilabel_forward,
                         softmax_multilabel_loss, softmax_probabilities)
from .params import MultilabelLossError, SigmoidOptions, SoftmaxOptions

__version__ = "0.1.0"
