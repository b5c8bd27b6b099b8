"""Caffe ``Python`` loss layers: thin adapters over the numpy cores (:mod:`.softmax`, :mod:`.sigmoid`, :mod:`.zlpr`,
:mod:`.two_way`).

Use from a prototxt (``loss_weight: 1`` is required, or Caffe skips backward)::

    layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" loss_weight: 1
      python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer"
                     param_str: '{"normalize_targets": "count"}' } }

The layers keep no state between iterations other than scratch buffers that
are fully rewritten by every forward pass, so a snapshot and resume loses
nothing. They never write to a bottom's data. The gradient is scaled by
``top[0].diff``, which is where Caffe puts ``loss_weight``.
"""
from typing import Any, ClassVar

import caffe

from softmax_multilabel_layer.losses import sigmoid, softmax, two_way, usage_warnings, zlpr
from softmax_multilabel_layer.losses.common import Workspace, class_axis_shape
from softmax_multilabel_layer.losses.labels import check_label_shapes
from softmax_multilabel_layer.params import (
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    TwoWayOptions,
    ZLPROptions,
)


class _MultilabelLossLayer(caffe.Layer):
    # Set by every subclass.
    options_class: ClassVar[type[SoftmaxOptions] | type[SigmoidOptions] | type[ZLPROptions] | type[TwoWayOptions]]
    bottom_names: ClassVar[tuple[str, ...]]     # required bottoms first, then optional ones
    required_bottoms: ClassVar[int] = 2
    top_names: ClassVar[tuple[str, ...]] = ("loss", "probabilities")
    # Set by setup and forward.
    options: SoftmaxOptions | SigmoidOptions | ZLPROptions | TwoWayOptions
    ctx: softmax.SoftmaxContext | sigmoid.SigmoidContext | zlpr.ZLPRContext | two_way.TwoWayContext | None

    # Caffe calls these with lists of its Blobs (pycaffe is Any to mypy: see pyproject.toml).
    def setup(self, bottom: list[Any], top: list[Any]) -> None:
        name = type(self).__name__
        self.options = self.options_class.from_param_str(self.param_str, name)
        max_bottoms = self._max_bottoms()
        if not self.required_bottoms <= len(bottom) <= max_bottoms:
            expected = ("%d" % max_bottoms if max_bottoms == self.required_bottoms
                        else "%d or %d" % (self.required_bottoms, max_bottoms))
            raise MultilabelLossError("%s: got %d bottoms, expected %s (%s)"
                                      % (name, len(bottom), expected, ", ".join(self.bottom_names[:max_bottoms])))
        if not 1 <= len(top) <= len(self.top_names):
            raise MultilabelLossError("%s: got %d tops, expected %s" % (
                name, len(top), "1 (loss) or 2 (loss, probabilities)" if len(self.top_names) == 2 else
                "1 (loss): its scores rank, they are no probabilities"))
        self.workspace = Workspace()
        self.ctx = None
        self._checked_shapes: tuple | None = None   # bottom shapes that reshape last validated

    def _max_bottoms(self) -> int:
        return self.required_bottoms

    def reshape(self, bottom: list[Any], top: list[Any]) -> None:
        # Caffe calls reshape before every forward; the checks depend only on the shapes, so they run when those change.
        shapes = tuple(tuple(bottom[i].data.shape) for i in range(len(bottom)))
        if shapes == self._checked_shapes:
            return
        shape = shapes[0]
        _, classes, _ = class_axis_shape(shape, self.options.axis, self.options.owner, self.bottom_names[0])
        check_label_shapes(self.options, shape, shapes[1], shapes[2] if len(bottom) > 2 else None,
                           blob=self.bottom_names[1])
        self.options.check_class_count(classes)
        top[0].reshape()                  # a scalar, like Caffe's own loss layers
        if len(top) > 1:
            top[1].reshape(*shape)
        self._checked_shapes = shapes

    def backward(self, top: list[Any], propagate_down: list[bool], bottom: list[Any]) -> None:
        if propagate_down[0]:
            self._backward_core(self.ctx, float(top[0].diff), bottom[0].diff)
        for i in range(1, len(bottom)):
            if propagate_down[i]:         # labels get no gradient, even when force_backward asks
                bottom[i].diff[...] = 0


class SoftmaxMultilabelLossLayer(_MultilabelLossLayer):
    """Multi-label softmax cross-entropy; see :func:`softmax.softmax_multilabel_forward`.

    Bottoms: scores, labels (same shape; or, with ``"label_format": "indices"``,
    class indices padded with -1 and an optional third bottom of label weights).
    Tops: loss, and optionally the softmax probabilities.
    """
    options_class = SoftmaxOptions
    options: SoftmaxOptions
    ctx: softmax.SoftmaxContext | None
    bottom_names = ("scores", "labels", "label_weights")

    def _max_bottoms(self) -> int:
        return 3 if self.options.label_format == "indices" else 2

    def forward(self, bottom: list[Any], top: list[Any]) -> None:
        weights = bottom[2].data if len(bottom) > 2 else None
        loss, self.ctx = softmax.softmax_multilabel_forward(bottom[0].data, bottom[1].data, weights,
                                                      options=self.options, workspace=self.workspace)
        usage_warnings.check_forward(self, bottom, top)     # after the core: refused input gets only the error
        top[0].data[...] = loss
        if len(top) > 1:
            softmax.softmax_probabilities(self.ctx, out=top[1].data)

    _backward_core = staticmethod(softmax.softmax_multilabel_backward)


class SigmoidMultilabelLossLayer(_MultilabelLossLayer):
    """Multi-label sigmoid cross-entropy / focal / asymmetric loss; see :func:`sigmoid.sigmoid_multilabel_forward`.

    Bottoms: scores, targets in [0, 1] (same shape). Tops: loss, and optionally
    the sigmoid probabilities.
    """
    options_class = SigmoidOptions
    options: SigmoidOptions
    ctx: sigmoid.SigmoidContext | None
    bottom_names = ("scores", "targets")

    def forward(self, bottom: list[Any], top: list[Any]) -> None:
        loss, self.ctx = sigmoid.sigmoid_multilabel_forward(bottom[0].data, bottom[1].data,
                                                      options=self.options, workspace=self.workspace,
                                                      probabilities=len(top) > 1)
        usage_warnings.check_forward(self, bottom, top)     # after the core: refused input gets only the error
        top[0].data[...] = loss
        if len(top) > 1:
            sigmoid.sigmoid_probabilities(self.ctx, out=top[1].data)

    _backward_core = staticmethod(sigmoid.sigmoid_multilabel_backward)


class ZLPRLossLayer(_MultilabelLossLayer):
    """ZLPR (Su et al. 2022): log(1 + sum_neg e^s) + log(1 + sum_pos e^-s); see :func:`zlpr.zlpr_forward`.

    Bottoms: scores, labels (0/1, the scores' shape; or, with ``"label_format": "indices"``, class indices
    padded with -1). Tops: loss, and optionally sigmoid(scores), whose natural threshold 0.5 is ZLPR's s > 0.
    Options: ``normalization``, ``axis``, ``label_format``.
    """
    options_class = ZLPROptions
    options: ZLPROptions
    ctx: zlpr.ZLPRContext | None
    bottom_names = ("scores", "labels")

    def forward(self, bottom: list[Any], top: list[Any]) -> None:
        usage_warnings.check_forward(self, bottom, top)
        loss, self.ctx = zlpr.zlpr_forward(bottom[0].data, bottom[1].data, options=self.options,
                                           workspace=self.workspace)
        top[0].data[...] = loss
        if len(top) > 1:
            zlpr.zlpr_probabilities(self.ctx, out=top[1].data)

    _backward_core = staticmethod(zlpr.zlpr_backward)


class TwoWayLossLayer(_MultilabelLossLayer):
    """The two-way multi-label loss (Kobayashi, CVPR 2023); see :func:`two_way.two_way_forward`.

    Bottoms: scores, 0/1 labels (the scores' shape). Top: the loss only (the
    scores rank; they have no threshold or probability meaning). Options:
    ``tp`` (4), ``tn`` (1), ``axis``.

    The loss couples the samples of a batch (its class direction contrasts the
    samples of each class), so with ``iter_size`` > 1 the solver averages the
    losses of iter_size separate batches: not the loss of one batch iter_size
    times larger (see :mod:`.two_way`).
    """
    options_class = TwoWayOptions
    options: TwoWayOptions
    ctx: two_way.TwoWayContext | None
    bottom_names = ("scores", "labels")
    top_names = ("loss",)

    def forward(self, bottom: list[Any], top: list[Any]) -> None:
        usage_warnings.check_forward(self, bottom, top)
        loss, self.ctx = two_way.two_way_forward(bottom[0].data, bottom[1].data, options=self.options,
                                                 workspace=self.workspace)
        top[0].data[...] = loss

    _backward_core = staticmethod(two_way.two_way_backward)
