"""The reusable layer snippets in prototxt/layers/ build and run in a real caffe.Net."""
from pathlib import Path

import caffe
import numpy as np
import pytest

from caffe_nets import input_layer

SNIPPETS = Path(__file__).resolve().parents[1] / "prototxt" / "layers"
INPUTS = {
    "softmax_multilabel_loss.prototxt": {"scores": (4, 6), "labels": (4, 6)},
    "softmax_multilabel_loss_indices.prototxt": {"scores": (4, 6), "labels": (4, 2), "label_weights": (4, 2)},
    "sigmoid_multilabel_loss.prototxt": {"scores": (4, 6), "labels": (4, 6)},
    "zlpr_loss.prototxt": {"scores": (4, 6), "labels": (4, 6)},
    "two_way_loss.prototxt": {"scores": (4, 6), "labels": (4, 6)},
}


def test_every_snippet_is_covered():
    assert sorted(p.name for p in SNIPPETS.glob("*.prototxt")) == sorted(INPUTS)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_snippet_runs(tmp_path, name):
    inputs = INPUTS[name]
    text = "force_backward: true\n" + "".join(input_layer(blob, shape) for blob, shape in inputs.items())
    path = tmp_path / "net.prototxt"
    path.write_text(text + (SNIPPETS / name).read_text())
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["scores"].data[...] = np.random.default_rng(0).normal(size=inputs["scores"])
    net.blobs["labels"].data[...] = np.array([[0, 1], [2, -1], [3, 4], [5, 0]]) if "indices" in name else \
        (np.arange(24).reshape(4, 6) % 3 == 0)
    if "label_weights" in inputs:
        net.blobs["label_weights"].data[...] = 1
    net.forward()
    net.backward()
    assert float(net.blobs["loss"].data) > 0
    assert np.abs(net.blobs["scores"].diff).sum() > 0
