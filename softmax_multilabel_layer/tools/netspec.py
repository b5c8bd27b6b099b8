"""Build our loss layers from Python: pycaffe ``NetSpec`` helpers and ready ``layer { }`` blocks.

Options are checked when the net is *built*, with the same validation as the
layers, so a typo fails here instead of at iteration 0 of a training run::

    import caffe
    from caffe import layers as L
    from softmax_multilabel_layer.netspec import softmax_multilabel_loss

    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(source="train_list.txt", batch_size=64, ntop=2)
    n.scores = L.InnerProduct(n.data, num_output=10)
    n.loss = softmax_multilabel_loss(n.scores, n.label, normalize_targets="count")
    # or, with the probabilities as a second top:
    # n.loss, n.prob = softmax_multilabel_loss(n.scores, n.label, ntop=2)
    with open("train.prototxt", "w") as f:
        f.write(str(n.to_proto()))

Without NetSpec, :func:`layer_prototxt` returns the same layer as prototxt text::

    print(layer_prototxt("sigmoid", bottoms=("fc_out", "label"), gamma=2))
"""
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from softmax_multilabel_layer.params import (
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    TwoWayOptions,
    ZLPROptions,
    check_choice,
    check_number,
)

OptionsClass = type[SoftmaxOptions] | type[SigmoidOptions] | type[ZLPROptions] | type[TwoWayOptions]
LOSSES: dict[str, tuple[str, OptionsClass]] = {
    "softmax": ("SoftmaxMultilabelLossLayer", SoftmaxOptions),
    "sigmoid": ("SigmoidMultilabelLossLayer", SigmoidOptions),
    "zlpr": ("ZLPRLossLayer", ZLPROptions),
    "two_way": ("TwoWayLossLayer", TwoWayOptions)}
# The losses with a probabilities top (ntop=2); the two-way loss's scores only rank.
WITH_PROBABILITIES = ("softmax", "sigmoid", "zlpr")
MODULE = "softmax_multilabel_layer.layers"


def python_param(loss: str, params: Mapping[str, Any], owner: str) -> dict[str, str]:
    """Validated ``python_param`` fields for ``loss`` (a key of :data:`LOSSES`) and a dict of options.

    Returns ``dict(module=MODULE, layer=<class name>, param_str=<JSON>)``. The
    options go through the layers' own validation, so an unknown key or a bad
    value raises :class:`MultilabelLossError` (naming ``owner``) now. ``param_str``
    holds only the given keys, in the given order; with no options it is left
    out (Caffe's default "" means every default).
    """
    check_choice(owner, "loss", loss, tuple(LOSSES))
    layer, options_class = LOSSES[loss]
    options_class.from_kwargs(owner, params)
    fields = dict(module=MODULE, layer=layer)
    if params:
        fields["param_str"] = json.dumps(dict(params))
    return fields


def _check(owner: str, loss: str, num_bottoms: int, loss_weight: float, ntop: int,
           params: Mapping[str, Any]) -> tuple[dict[str, str], list[float]]:
    """Validate a whole loss layer; returns (python_param fields, one loss_weight per top)."""
    fields = python_param(loss, params, owner)
    indices = loss == "softmax" and params.get("label_format") == "indices"
    if not 2 <= num_bottoms <= (3 if indices else 2):
        if indices:
            expected = "2 or 3 (scores, labels, label_weights)"
        elif loss == "softmax":
            expected = '2 (scores, labels); a third bottom (label_weights) needs label_format="indices"'
        elif loss == "sigmoid":
            expected = "2 (scores, targets)"
        else:
            expected = "2 (scores, labels)"
        raise MultilabelLossError("%s: got %d bottoms, expected %s" % (owner, num_bottoms, expected))
    weight = check_number(owner, "loss_weight", loss_weight)
    if loss not in WITH_PROBABILITIES:
        if isinstance(ntop, bool) or ntop != 1:
            raise MultilabelLossError("%s: ntop must be 1 (loss) for the %s loss, which has no probabilities top, "
                                      "got %r" % (owner, loss, ntop))
    elif isinstance(ntop, bool) or not isinstance(ntop, int) or ntop not in (1, 2):
        raise MultilabelLossError("%s: ntop must be 1 (loss) or 2 (loss, probabilities), got %r" % (owner, ntop))
    return fields, [weight] + [0.0] * (ntop - 1)   # the probabilities top is not a loss


def softmax_multilabel_loss(scores: Any, labels: Any, *label_weights: Any, loss_weight: float = 1, ntop: int = 1,
                            **params: Any) -> Any:
    """A NetSpec ``Python`` layer running :class:`~.layers.SoftmaxMultilabelLossLayer`.

    ``label_weights`` (a third bottom) is allowed only with ``label_format="indices"``.
    ``params`` are the layer's options (see :class:`~.params.SoftmaxOptions`).
    Returns the loss top, or (loss, probabilities) with ``ntop=2``.
    """
    bottoms = (scores, labels) + label_weights
    fields, weights = _check("softmax_multilabel_loss", "softmax", len(bottoms), loss_weight, ntop, params)
    return caffe.layers.Python(*bottoms, python_param=fields, loss_weight=weights, ntop=ntop)


def sigmoid_multilabel_loss(scores: Any, targets: Any, *extra_bottoms: Any, loss_weight: float = 1, ntop: int = 1,
                            **params: Any) -> Any:
    """A NetSpec ``Python`` layer running :class:`~.layers.SigmoidMultilabelLossLayer`.

    ``params`` are the layer's options (see :class:`~.params.SigmoidOptions`).
    ``extra_bottoms`` only exists to reject a third bottom with a clear error.
    Returns the loss top, or (loss, probabilities) with ``ntop=2``.
    """
    bottoms = (scores, targets) + extra_bottoms
    fields, weights = _check("sigmoid_multilabel_loss", "sigmoid", len(bottoms), loss_weight, ntop, params)
    return caffe.layers.Python(*bottoms, python_param=fields, loss_weight=weights, ntop=ntop)


def zlpr_loss(scores: Any, labels: Any, *extra_bottoms: Any, loss_weight: float = 1, ntop: int = 1,
              **params: Any) -> Any:
    """A NetSpec ``Python`` layer running :class:`~.layers.ZLPRLossLayer`.

    ``params`` are the layer's options (see :class:`~.params.ZLPROptions`); ``label_format="indices"`` takes
    N x K class indices padded with -1 as ``labels``. Returns the loss top, or (loss, sigmoid of the scores)
    with ``ntop=2``.
    """
    bottoms = (scores, labels) + extra_bottoms
    fields, weights = _check("zlpr_loss", "zlpr", len(bottoms), loss_weight, ntop, params)
    return caffe.layers.Python(*bottoms, python_param=fields, loss_weight=weights, ntop=ntop)


def two_way_loss(scores: Any, labels: Any, *extra_bottoms: Any, loss_weight: float = 1, ntop: int = 1,
                 **params: Any) -> Any:
    """A NetSpec ``Python`` layer running :class:`~.layers.TwoWayLossLayer` (one top: the loss).

    ``params`` are the layer's options (see :class:`~.params.TwoWayOptions`, e.g. ``tp=4.0, tn=1.0``).
    """
    bottoms = (scores, labels) + extra_bottoms
    fields, weights = _check("two_way_loss", "two_way", len(bottoms), loss_weight, ntop, params)
    return caffe.layers.Python(*bottoms, python_param=fields, loss_weight=weights, ntop=ntop)


def layer_prototxt(loss: str, bottoms: Sequence[str] = ("scores", "labels"), top: str | Iterable[str] = "loss",
                   name: str = "loss", loss_weight: float = 1, **params: Any) -> str:
    """A ready ``layer { ... }`` prototxt block for ``loss`` ("softmax", "sigmoid", "zlpr" or "two_way").

    ``bottoms`` is a sequence of blob names; ``top`` a name, or two names
    (loss, probabilities). The layer is the one the NetSpec helpers build,
    validated the same way; ``param_str`` is written in single quotes so the
    JSON stays readable.
    """
    owner = "layer_prototxt"
    if isinstance(bottoms, str) or not all(isinstance(b, str) for b in bottoms):
        raise MultilabelLossError("%s: bottoms must be a list of blob names, got %r" % (owner, bottoms))
    tops = [top] if isinstance(top, str) else list(top)
    if not 1 <= len(tops) <= 2 or not all(isinstance(t, str) for t in tops):
        raise MultilabelLossError("%s: top must be a blob name or two names (loss, probabilities), got %r"
                                  % (owner, top))
    fields, weights = _check(owner, loss, len(bottoms), loss_weight, len(tops), params)
    layer = caffe_pb2.LayerParameter(name=name, type="Python", bottom=list(bottoms), top=tops,
                                     loss_weight=weights, python_param=caffe_pb2.PythonParameter(**fields))
    lines = text_format.MessageToString(layer, indent=2).splitlines()
    param_str = fields.get("param_str", "")
    if "'" not in param_str and "\\" not in param_str:   # else keep text_format's escaped form
        lines = ["    param_str: '%s'" % param_str if line.startswith("    param_str: ") else line
                 for line in lines]
    return "layer {\n%s\n}\n" % "\n".join(lines)


__all__ = ["LOSSES", "MODULE", "MultilabelLossError", "layer_prototxt", "python_param",
           "sigmoid_multilabel_loss", "softmax_multilabel_loss", "two_way_loss", "zlpr_loss"]
