"""A Caffe ``Python`` data layer making synthetic, learnable multi-label data.

Used by the smoke net (``prototxt/smoke/``) so that training needs no data
files. Each sample gets a multi-hot label vector with between
``min_labels`` and ``max_labels`` positive classes (drawn without
replacement); its feature vector is a noisy linear function of the labels,

    data = labels @ prototypes + noise * N(0, 1),

where ``prototypes`` is a fixed random ``(num_classes, dim)`` matrix. A linear
classifier can therefore recover the labels, and a loss on them falls when it
trains. Everything is drawn from one ``numpy.random.RandomState(seed)``, so the
sequence of batches is the same on every run.

Prototxt::

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "softmax_multilabel_layer.synthetic_data"
                     layer: "SyntheticMultilabelDataLayer"
                     param_str: '{"batch_size": 32, "num_classes": 10, "dim": 32, "seed": 1}' } }

Tops: ``data`` of shape (batch_size, dim), ``label`` of shape
(batch_size, num_classes) with entries 0 or 1.
"""
from typing import Any

import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.params import MultilabelLossError, parse_param_str

DEFAULTS: dict[str, Any] = {
    "batch_size": 32,
    "num_classes": 10,
    "dim": 32,
    "min_labels": 1,
    "max_labels": 3,
    "noise": 0.3,
    "seed": 0,
}


def parse_params(param_str: str) -> dict[str, Any]:
    """Return the layer options from ``param_str`` ('' means defaults), read by the package's one parser."""
    params = dict(DEFAULTS)
    params.update(parse_param_str(param_str, "SyntheticMultilabelDataLayer", list(DEFAULTS)))
    for key in ("batch_size", "num_classes", "dim", "min_labels", "max_labels"):
        if int(params[key]) != params[key] or params[key] < 1:
            raise MultilabelLossError("SyntheticMultilabelDataLayer: %s must be a positive integer, got %r"
                                      % (key, params[key]))
    if not params["min_labels"] <= params["max_labels"] <= params["num_classes"]:
        raise MultilabelLossError("SyntheticMultilabelDataLayer: need 1 <= min_labels <= max_labels <= num_classes, "
                                  "got %(min_labels)r, %(max_labels)r, %(num_classes)r" % params)
    if params["noise"] < 0:
        raise MultilabelLossError("SyntheticMultilabelDataLayer: noise must be >= 0, got %r" % params["noise"])
    return params


class SyntheticBatches(object):
    """Deterministic generator of (data, labels) batches; no Caffe needed."""

    def __init__(self, batch_size: int = 32, num_classes: int = 10, dim: int = 32, min_labels: int = 1,
                 max_labels: int = 3, noise: float = 0.3, seed: int = 0) -> None:
        self.batch_size, self.num_classes, self.dim = int(batch_size), int(num_classes), int(dim)
        self.min_labels, self.max_labels, self.noise = int(min_labels), int(max_labels), float(noise)
        self.rng = np.random.RandomState(seed)
        self.prototypes = self.rng.randn(self.num_classes, self.dim).astype(np.float32)

    def next_batch(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The next (data, labels): float32 arrays of shape (batch_size, dim) and (batch_size, num_classes)."""
        labels = np.zeros((self.batch_size, self.num_classes), dtype=np.float32)
        counts = self.rng.randint(self.min_labels, self.max_labels + 1, size=self.batch_size)
        for i, count in enumerate(counts):
            labels[i, self.rng.choice(self.num_classes, size=count, replace=False)] = 1.0
        noise = self.rng.randn(self.batch_size, self.dim).astype(np.float32)
        data = labels.dot(self.prototypes) + self.noise * noise
        return data.astype(np.float32), labels


try:
    import caffe
except ImportError:  # the generator above works without Caffe
    caffe = None

if caffe is not None:
    class SyntheticMultilabelDataLayer(caffe.Layer):
        """Caffe data layer: no bottoms; tops data (N, dim) and label (N, C)."""

        def setup(self, bottom: list[Any], top: list[Any]) -> None:
            if len(bottom) != 0:
                raise MultilabelLossError("SyntheticMultilabelDataLayer: takes no bottoms, got %d" % len(bottom))
            if len(top) != 2:
                raise MultilabelLossError("SyntheticMultilabelDataLayer: needs 2 tops (data, label), got %d" % len(top))
            self.batches = SyntheticBatches(**parse_params(self.param_str))

        def reshape(self, bottom: list[Any], top: list[Any]) -> None:
            top[0].reshape(self.batches.batch_size, self.batches.dim)
            top[1].reshape(self.batches.batch_size, self.batches.num_classes)

        def forward(self, bottom: list[Any], top: list[Any]) -> None:
            data, labels = self.batches.next_batch()
            top[0].data[...] = data
            top[1].data[...] = labels

        def backward(self, top: list[Any], propagate_down: list[bool], bottom: list[Any]) -> None:
            pass
