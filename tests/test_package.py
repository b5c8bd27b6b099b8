"""The package root: `module: "softmax_multilabel_layer"` works in a prototxt, and the core imports without Caffe."""
import subprocess
import sys

import numpy as np
import pytest

import softmax_multilabel_layer
from softmax_multilabel_layer import layers

from caffe_nets import input_layer, net_from_text, run


@pytest.mark.parametrize("layer", ["SoftmaxMultilabelLossLayer", "SigmoidMultilabelLossLayer"])
def test_module_given_as_the_package_root_works(tmp_path, layer):
    # The mistake: module "softmax_multilabel_layer", forgetting ".layers". Both names give the same class.
    assert getattr(softmax_multilabel_layer, layer) is getattr(layers, layer)
    net = net_from_text(tmp_path, "force_backward: true\n" + input_layer("scores", (2, 3))
                        + input_layer("labels", (2, 3))
                        + 'layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" '
                        'loss_weight: 1 python_param { module: "softmax_multilabel_layer" layer: "%s" } }\n' % layer)
    loss, grad = run(net, {"scores": np.zeros((2, 3)), "labels": [[1, 0, 0], [0, 1, 1]]})
    assert loss > 0 and np.abs(grad).sum() > 0


def test_root_imports_without_caffe_and_says_what_is_missing():
    code = ("import sys; sys.modules['caffe'] = None\n"
            "import softmax_multilabel_layer as m\n"
            "assert 'caffe' not in {k for k, v in sys.modules.items() if v is not None}\n"
            "assert 'SoftmaxMultilabelLossLayer' in dir(m)\n"
            "m.softmax_multilabel_loss([[0.0, 1.0]], [[0, 1]])\n"
            "try:\n    m.SoftmaxMultilabelLossLayer\nexcept ImportError as e:\n    print('ImportError', e)\n"
            "try:\n    m.softmax_multilabel_los\nexcept AttributeError as e:\n    print('AttributeError', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ImportError import of caffe halted; None in sys.modules",
        "AttributeError module 'softmax_multilabel_layer' has no attribute 'softmax_multilabel_los'"]


# The stable entry points (issue 27): what users write in prototxts and scripts keeps working after the package
# was arranged in rooms (losses/, data/, evaluation/, tools/).
@pytest.mark.parametrize("module, layer", [
    ("softmax_multilabel_layer.layers", "SoftmaxMultilabelLossLayer"),
    ("softmax_multilabel_layer.layers", "SigmoidMultilabelLossLayer"),
    ("softmax_multilabel_layer", "SoftmaxMultilabelLossLayer"),
    ("softmax_multilabel_layer.losses.layers", "SigmoidMultilabelLossLayer"),
])
def test_every_documented_loss_module_path_trains_in_a_net(tmp_path, module, layer):
    net = net_from_text(tmp_path, "force_backward: true\n" + input_layer("scores", (2, 3))
                        + input_layer("labels", (2, 3))
                        + 'layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" '
                        'loss_weight: 1 python_param { module: "%s" layer: "%s" } }\n' % (module, layer))
    loss, grad = run(net, {"scores": np.zeros((2, 3)), "labels": [[1, 0, 0], [0, 1, 1]]})
    assert loss > 0 and np.abs(grad).sum() > 0


def test_data_layer_path_resolves_lazily_to_the_layer_class():
    import softmax_multilabel_layer.data as data
    from softmax_multilabel_layer.data.layer import MultilabelImageDataLayer
    assert data.MultilabelImageDataLayer is MultilabelImageDataLayer
    assert "MultilabelImageDataLayer" in dir(data)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchLayer'"):
        data.NoSuchLayer  # noqa: B018


def test_every_name_in_all_is_importable_from_the_root():
    for name in softmax_multilabel_layer.__all__:
        assert getattr(softmax_multilabel_layer, name) is not None, name


def test_data_package_imports_without_caffe():
    code = ("import sys; sys.modules['caffe'] = None\n"
            "import softmax_multilabel_layer.data.image_data, softmax_multilabel_layer.data.convert\n"
            "import softmax_multilabel_layer.evaluation.metrics, softmax_multilabel_layer.evaluation.rules\n"
            "assert 'caffe' not in {k for k, v in sys.modules.items() if v is not None}\n")
    subprocess.run([sys.executable, "-c", code], check=True)
