"""Build our loss layers from Python: pycaffe ``NetSpec`` helpers and ready ``layer { }`` blocks.

Options are checked when the net is *built*, with the same validation as the
layers, so a typo fails here instead of at iteration 0 of a training run::

    import caffe
    from caffe import layers as L
    from softmax_multilabel_layer.tools.netspec import softmax_multilabel_loss

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

A sigmoid-family head (BCE, focal, ASL) trained on many rare tags starts better from the
prior bias of Lin et al. (2017), b = -log((1 - pi) / pi): every tag's probability starts at
its prior pi instead of 0.5. A constant prior is a Caffe filler; per-tag priors (each tag's
frequency) are written into the initial weights::

    n.scores = L.InnerProduct(n.data, num_output=10, bias_filler=prior_bias_filler(0.01))
    # per tag: priors from the training labels, into a net, saved for `caffe train --weights`
    net = caffe.Net("train.prototxt", caffe.TRAIN)
    set_prior_bias(net, "scores", image_list_priors("train_list.txt", num_classes=10))
    net.save("init.caffemodel")
"""
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from numpy.typing import ArrayLike, NDArray

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


def prior_bias(prior: ArrayLike, owner: str = "prior_bias") -> NDArray[np.float64]:
    """The output bias at which a sigmoid unit starts at probability ``prior`` (Lin et al., ICCV 2017).

    .. math:: b = -\\log\\frac{1 - \\pi}{\\pi}, \\qquad \\sigma(b) = \\pi

    Args:
        prior: pi, a number or an array of per-tag priors, each strictly between 0 and 1.
        owner: the name errors start with.

    Returns:
        b, float64, the shape of ``prior`` (a 0-d array for a number).

    Example::

        >>> float(prior_bias(0.01))
        -4.59511985013459
    """
    raw = np.asarray(prior)
    if raw.dtype.kind not in "fiu":
        raise MultilabelLossError("%s: a prior must be strictly between 0 and 1, got %r" % (owner, prior))
    pi = raw.astype(np.float64)
    inside = (pi > 0) & (pi < 1)            # False for nan
    if not np.all(inside):
        raise MultilabelLossError("%s: a prior must be strictly between 0 and 1, got %r"
                                  % (owner, pi[~inside].ravel()[0].item()))
    return np.log(pi) - np.log1p(-pi)


def prior_bias_filler(prior: float) -> dict[str, Any]:
    """A Caffe ``bias_filler`` that starts every sigmoid output at probability ``prior``.

    For NetSpec: ``L.InnerProduct(bottom, num_output=T, bias_filler=prior_bias_filler(0.01))``; in
    prototxt: ``bias_filler { type: "constant" value: -4.59512 }``. Softmax heads keep a zero bias (a
    constant shift of every score does not change a softmax).

    Returns:
        ``{"type": "constant", "value": b}`` with b = :func:`prior_bias` of ``prior``.
    """
    if isinstance(prior, bool) or not isinstance(prior, (int, float)):
        raise MultilabelLossError("prior_bias_filler: prior must be one number (per-tag priors: set_prior_bias), "
                                  "got %r" % (prior,))
    return {"type": "constant", "value": float(prior_bias(prior, "prior_bias_filler"))}


def tag_priors(labels: ArrayLike, smoothing: float = 1.0) -> NDArray[np.float64]:
    """Each tag's frequency in dense N x C labels (an image counts for a tag when its label is > 0).

    Args:
        labels: N x C, 0/1 (or weights; > 0 means present).
        smoothing: s, added to every count (Laplace): pi_c = (n_c + s) / (N + 2 s), so a tag that is never
            (or always) present still has a finite bias. Must be > 0.

    Returns:
        pi, C float64 values strictly between 0 and 1.
    """
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise MultilabelLossError("tag_priors: labels must be N x C with N, C >= 1, got shape %s" % (y.shape,))
    return _smoothed((y > 0).sum(axis=0), y.shape[0], smoothing, "tag_priors")


def _smoothed(counts: ArrayLike, n: int, smoothing: float, owner: str) -> NDArray[np.float64]:
    """(counts + s) / (n + 2 s), after checking s > 0."""
    s = check_number(owner, "smoothing", smoothing)
    if s <= 0:
        raise MultilabelLossError("%s: smoothing must be > 0, got %r" % (owner, smoothing))
    return (np.asarray(counts, np.float64) + s) / (n + 2 * s)


def image_list_priors(source: str, num_classes: int | None = None, class_names: str | None = None,
                      smoothing: float = 1.0) -> NDArray[np.float64]:
    """:func:`tag_priors` of an image list file (the format of ``ImageMultilabelDataLayer``).

    Args:
        source: the list file; ``num_classes`` or ``class_names`` as the data layer takes them.
        smoothing: see :func:`tag_priors`.

    Returns:
        pi, num_classes float64 values.
    """
    from softmax_multilabel_layer.data.image_data import parse_image_list
    images = parse_image_list(source, num_classes, class_names, owner="image_list_priors")
    counts = np.bincount(images.label_indices[images.label_values > 0], minlength=images.num_classes)
    return _smoothed(counts, len(images), smoothing, "image_list_priors")


def set_prior_bias(net: Any, layer: str, prior: ArrayLike) -> NDArray[np.float64]:
    """Write the prior bias into ``net.params[layer][1]`` (the bias of an InnerProduct or Convolution).

    Args:
        net: a ``caffe.Net``. layer: the layer that makes the scores. prior: one pi or C per-tag values.

    Returns:
        The biases written (float64, C). Save the net (``net.save("init.caffemodel")``) and start
        training from it with ``caffe train --solver ... --weights init.caffemodel``.
    """
    if layer not in net.params or len(net.params[layer]) < 2:
        raise MultilabelLossError("set_prior_bias: layer %r has no bias in this net (layers with parameters: %s)"
                                  % (layer, ", ".join(net.params)))
    bias = net.params[layer][1].data
    b = prior_bias(prior, "set_prior_bias")
    if b.ndim and b.shape != bias.shape:
        raise MultilabelLossError("set_prior_bias: %d priors for layer %r with %d outputs"
                                  % (b.size, layer, bias.size))
    bias[...] = b
    return np.broadcast_to(b, bias.shape).astype(np.float64)


def write_prior_weights(net_path: str, layer: str, prior: ArrayLike, out_path: str,
                        seed: int = 1) -> NDArray[np.float64]:
    """Initial weights for ``caffe train --weights``: ``net_path``'s fillers (seeded), ``layer``'s bias at the prior.

    Args:
        net_path: the training net's prototxt (its data layers must be able to open their sources).
        layer: the layer that makes the scores. prior: one pi or C per-tag values (:func:`image_list_priors`).
        out_path: the ``.caffemodel`` to write (through a temporary name, so a failed run leaves no half file).
        seed: Caffe's random seed for the other layers' fillers.

    Returns:
        The biases written.
    """
    import os
    caffe.set_mode_cpu()
    caffe.set_random_seed(int(seed))
    net = caffe.Net(net_path, caffe.TRAIN)
    biases = set_prior_bias(net, layer, prior)
    tmp = out_path + ".tmp"
    net.save(tmp)
    os.replace(tmp, out_path)
    return biases


def bias_filler_prototxt(layer: str, bottom: str, num_output: int, prior: float) -> str:
    """A ``layer { ... }`` InnerProduct block making the scores ``layer`` whose outputs start at probability ``prior``
    (:func:`prior_bias_filler`), with Xavier weights."""
    filler = prior_bias_filler(prior)
    params = caffe_pb2.LayerParameter(name=layer, type="InnerProduct", bottom=[bottom], top=[layer])
    params.inner_product_param.num_output = int(num_output)
    params.inner_product_param.weight_filler.type = "xavier"
    params.inner_product_param.bias_filler.type = filler["type"]
    params.inner_product_param.bias_filler.value = filler["value"]
    return "layer {\n%s\n}\n" % text_format.MessageToString(params, indent=2).rstrip("\n")


__all__ = ["LOSSES", "MODULE", "MultilabelLossError", "bias_filler_prototxt", "image_list_priors", "layer_prototxt",
           "prior_bias", "prior_bias_filler", "python_param", "set_prior_bias", "sigmoid_multilabel_loss",
           "softmax_multilabel_loss", "tag_priors", "two_way_loss", "write_prior_weights", "zlpr_loss"]
