"""The Caffe loss layers under their stable prototxt path (``module: "softmax_multilabel_layer.layers"``).

They live in :mod:`softmax_multilabel_layer.losses.layers`; this module only re-exports them.
"""
from softmax_multilabel_layer.losses.layers import (
    SigmoidMultilabelLossLayer,
    SoftmaxMultilabelLossLayer,
    TwoWayLossLayer,
    ZLPRLossLayer,
)

__all__ = ["SigmoidMultilabelLossLayer", "SoftmaxMultilabelLossLayer", "TwoWayLossLayer", "ZLPRLossLayer"]
