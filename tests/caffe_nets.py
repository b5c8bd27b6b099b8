"""Small caffe.Net builders for the layer tests: Input blobs feeding one loss layer."""
import json

import caffe
import numpy as np

LAYER_MODULE = "softmax_multilabel_layer.layers"


def input_layer(name, shape):
    dims = " ".join("dim: %d" % d for d in shape)
    return 'layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n' % (name, name, dims)


def python_loss_net(tmp_path, layer, inputs, params=None, loss_weight=1.0, extra_tops=()):
    """A net with Input blobs ``inputs`` (name -> shape, scores first) and our loss layer ``layer``.

    ``params`` is a dict (dumped to JSON) or a raw param_str string.
    """
    param_str = params if isinstance(params, str) else json.dumps(params or {})
    bottoms = " ".join('bottom: "%s"' % name for name in inputs)
    tops = " ".join('top: "%s"' % name for name in ("loss",) + tuple(extra_tops))
    text = 'name: "loss_test"\nforce_backward: true\n'
    text += "".join(input_layer(name, shape) for name, shape in inputs.items())
    text += ('layer { name: "loss" type: "Python" %s %s loss_weight: %r %s\n'
             '  python_param { module: "%s" layer: "%s" param_str: \'%s\' } }\n'
             % (bottoms, tops, loss_weight, "loss_weight: 0 " * len(extra_tops), LAYER_MODULE, layer, param_str))
    return net_from_text(tmp_path, text)


def native_loss_net(tmp_path, layer_type, inputs, loss_param="", loss_weight=1.0):
    """The same wiring with one of Caffe's own C++ loss layers."""
    bottoms = " ".join('bottom: "%s"' % name for name in inputs)
    text = 'name: "native_loss_test"\nforce_backward: true\n'
    text += "".join(input_layer(name, shape) for name, shape in inputs.items())
    text += ('layer { name: "loss" type: "%s" %s top: "loss" loss_weight: %r %s }\n'
             % (layer_type, bottoms, loss_weight, loss_param))
    return net_from_text(tmp_path, text)


def net_from_text(tmp_path, text):
    """A TRAIN-phase caffe.Net from prototxt text (written to a new file under tmp_path)."""
    path = tmp_path / ("net_%d.prototxt" % len(list(tmp_path.glob("net_*.prototxt"))))
    path.write_text(text)
    caffe.set_mode_cpu()
    return caffe.Net(str(path), caffe.TRAIN)


def run(net, feeds):
    """Forward and backward with the given input data; returns (loss, scores diff copy)."""
    for name, value in feeds.items():
        net.blobs[name].data[...] = value
    net.forward()
    net.backward()
    first = next(iter(feeds))
    return float(net.blobs["loss"].data), net.blobs[first].diff.copy()


def numeric_gradient(net, feeds, loss_weight, step=1e-2):
    """Central differences of loss_weight * loss with respect to the first feed (the scores)."""
    name = next(iter(feeds))
    for key, value in feeds.items():
        net.blobs[key].data[...] = value
    base = np.array(feeds[name], np.float64)
    grad = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        values = []
        for sign in (1, -1):
            shifted = base.copy()
            shifted[index] += sign * step
            net.blobs[name].data[...] = shifted
            net.forward()
            values.append(float(net.blobs["loss"].data))
        grad[index] = loss_weight * (values[0] - values[1]) / (2 * step)
    net.blobs[name].data[...] = base
    return grad


def assert_gradient_close(analytic, numeric, threshold=1e-2):
    """Caffe GradientChecker's rule: |a - n| <= threshold * max(|a|, |n|, 1)."""
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1.0)
    bad = np.abs(analytic - numeric) > threshold * scale
    assert not bad.any(), "gradient mismatch at %s: analytic %s numeric %s" % (
        np.argwhere(bad)[:5].tolist(), analytic[bad][:5], numeric[bad][:5])
