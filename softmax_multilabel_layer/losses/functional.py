"""Pure-numpy core of the multi-label losses, in one namespace. No Caffe import.

The code lives in one module per concern; this facade re-exports the public names:

* :mod:`.softmax`: :func:`softmax_multilabel_forward`, :func:`softmax_multilabel_backward`,
  :func:`softmax_probabilities`, :func:`softmax_multilabel_loss`;
* :mod:`.sigmoid`: :func:`sigmoid_multilabel_forward`, :func:`sigmoid_multilabel_backward`,
  :func:`sigmoid_probabilities`, :func:`sigmoid_multilabel_loss`;
* :mod:`.zlpr`: :func:`zlpr_forward`, :func:`zlpr_backward`, :func:`zlpr_probabilities`, :func:`zlpr_loss`;
* :mod:`.two_way`: :func:`two_way_forward`, :func:`two_way_backward`, :func:`two_way_loss`;
* :mod:`.labels`: :func:`check_label_shapes` and the label forms;
* :mod:`.common`: :class:`Workspace`, :func:`class_axis_shape`.

Each loss comes as a forward function that returns ``(loss, ctx)`` and a
backward function that turns ``ctx`` into d loss / d scores. Both work in
float32 and float64 and never write to their inputs. A :class:`Workspace`
passed to forward keeps the N x C buffers alive between calls, so a training
loop allocates them once.
"""
from softmax_multilabel_layer.losses.common import Workspace, class_axis_shape
from softmax_multilabel_layer.losses.labels import check_label_shapes
from softmax_multilabel_layer.losses.sigmoid import (
    SigmoidContext,
    sigmoid_multilabel_backward,
    sigmoid_multilabel_forward,
    sigmoid_multilabel_loss,
    sigmoid_probabilities,
)
from softmax_multilabel_layer.losses.softmax import (
    SoftmaxContext,
    softmax_multilabel_backward,
    softmax_multilabel_forward,
    softmax_multilabel_loss,
    softmax_probabilities,
)
from softmax_multilabel_layer.losses.two_way import TwoWayContext, two_way_backward, two_way_forward, two_way_loss
from softmax_multilabel_layer.losses.zlpr import (
    ZLPRContext,
    zlpr_backward,
    zlpr_forward,
    zlpr_loss,
    zlpr_probabilities,
)
from softmax_multilabel_layer.params import MultilabelLossError

__all__ = ["MultilabelLossError", "SigmoidContext", "SoftmaxContext", "Workspace", "check_label_shapes",
           "class_axis_shape", "sigmoid_multilabel_backward", "sigmoid_multilabel_forward", "sigmoid_multilabel_loss",
           "sigmoid_probabilities", "softmax_multilabel_backward", "softmax_multilabel_forward",
           "softmax_multilabel_loss", "softmax_probabilities", "TwoWayContext", "two_way_backward", "two_way_forward",
           "two_way_loss", "ZLPRContext", "zlpr_backward", "zlpr_forward", "zlpr_loss", "zlpr_probabilities"]
