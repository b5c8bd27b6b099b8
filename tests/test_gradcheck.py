"""softmax_multilabel_layer.tools.gradcheck: passes on correct layers (ours and Caffe's), fails on wrong ones.

The wrong layer is the 2018 blog's (tests/blog_softmax_loss_layer.py): its
backward is exact for binary labels only, and it ignores loss_weight.
"""
from pathlib import Path

import caffe
import numpy as np
import pytest

from softmax_multilabel_layer.tools.gradcheck import (
    GradcheckError,
    check_layer_gradient,
    format_report,
    parse_fill,
    prepare_net_param,
)

from caffe_nets import input_layer
from conftest import warns_if

REPO = Path(__file__).resolve().parents[1]
OURS = "softmax_multilabel_layer.layers"


def loss_net(tmp_path, layer_body, inputs, loss_weight=1, name="loss"):
    """Input blobs (name -> shape) feeding one layer named ``name``; returns the prototxt path."""
    bottoms = " ".join('bottom: "%s"' % b for b in inputs)
    weight = "loss_weight: %r" % loss_weight if loss_weight is not None else ""
    text = "".join(input_layer(b, shape) for b, shape in inputs.items())
    text += 'layer { name: "%s" %s top: "%s" %s %s }\n' % (name, bottoms, name, weight, layer_body)
    path = tmp_path / ("%s.prototxt" % name)
    path.write_text(text)
    return str(path)


def python_layer(layer, param_str="", module=OURS):
    return 'type: "Python" python_param { module: "%s" layer: "%s" param_str: \'%s\' }' % (module, layer, param_str)


SCORES_LABELS = {"scores": (4, 6), "labels": (4, 6)}
BINARY = "bernoulli:0.5"
REAL = "uniform:0.2:3"        # every label positive, real-valued


@pytest.mark.parametrize("layer,param_str,labels", [
    ("SoftmaxMultilabelLossLayer", "", BINARY),
    ("SoftmaxMultilabelLossLayer", "", REAL),
    ("SoftmaxMultilabelLossLayer", '{"normalize_targets": "sum", "label_smoothing": 0.1}', REAL),
    ("SigmoidMultilabelLossLayer", "", "uniform:0:1"),
    ("SigmoidMultilabelLossLayer", '{"gamma": 2, "alpha": 0.25, "pos_weight": 3}', BINARY),
])
@pytest.mark.parametrize("loss_weight", [1, 3])
def test_our_layers_pass(tmp_path, layer, param_str, labels, loss_weight):
    net = loss_net(tmp_path, python_layer(layer, param_str), SCORES_LABELS, loss_weight)
    with warns_if(layer == "SoftmaxMultilabelLossLayer" and labels == REAL and "normalize_targets" not in param_str):
        report = check_layer_gradient(net, "loss", fills={"scores": "gaussian:2", "labels": labels})
    assert report.passed, format_report(report)
    assert report.objective == "J = %g * sum(loss)" % loss_weight
    (check,) = report.checks
    assert (check.index, check.blob, check.checked, check.total) == (0, "scores", 24, 24)
    assert check.max_rel_error < 1e-3, format_report(report)


def test_our_indices_format_passes(tmp_path):
    inputs = {"scores": (4, 6), "labels": (4, 2), "label_weights": (4, 2)}
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer", '{"label_format": "indices"}'), inputs)
    with warns_if(True, match=r"label_weights has values above 1"):
        report = check_layer_gradient(net, "loss", fills={"labels": "randint:-1:6", "label_weights": REAL})
    assert report.passed, format_report(report)


def test_caffe_softmax_with_loss_passes(tmp_path):
    net = loss_net(tmp_path, 'type: "SoftmaxWithLoss"', {"scores": (5, 7), "label": (5,)}, loss_weight=None)
    report = check_layer_gradient(net, "loss", fills={"scores": "gaussian:3", "label": "randint:0:7"})
    assert report.passed, format_report(report)
    assert report.objective == "J = 1 * sum(loss)"        # Caffe's default loss weight of a *Loss layer
    assert [b.index for b in report.checks] == [0]         # labels are not checked by default


def test_caffe_sigmoid_cross_entropy_passes_at_loss_weight_2(tmp_path):
    net = loss_net(tmp_path, 'type: "SigmoidCrossEntropyLoss"', SCORES_LABELS, loss_weight=2)
    report = check_layer_gradient(net, "loss", fills={"labels": BINARY})
    assert report.passed, format_report(report)


def test_blog_layer_passes_with_binary_labels(tmp_path):
    net = loss_net(tmp_path, python_layer("BlogSoftmaxLossLayer", module="blog_softmax_loss_layer"), SCORES_LABELS)
    report = check_layer_gradient(net, "loss", fills={"labels": "constant:1"})
    assert report.passed, format_report(report)
    # ... and the checker notices that the layer writes to its bottom (the in-place max shift).
    assert any("wrote to the data of bottom(s) 0 (scores)" in note for note in report.notes), report.notes


def test_blog_layer_fails_with_real_valued_labels(tmp_path):
    net = loss_net(tmp_path, python_layer("BlogSoftmaxLossLayer", module="blog_softmax_loss_layer"), SCORES_LABELS)
    report = check_layer_gradient(net, "loss", fills={"labels": REAL})
    assert not report.passed
    (check,) = report.checks
    assert check.failures > 0 and check.max_rel_error > 0.05, format_report(report)
    assert "gradient check FAILED" in format_report(report)


def test_blog_layer_fails_at_loss_weight_3_because_it_ignores_top_diff(tmp_path):
    net = loss_net(tmp_path, python_layer("BlogSoftmaxLossLayer", module="blog_softmax_loss_layer"), SCORES_LABELS, 3)
    report = check_layer_gradient(net, "loss", fills={"labels": "constant:1"})
    assert not report.passed, format_report(report)
    check = report.checks[0]
    assert check.worst_numeric == pytest.approx(3 * check.worst_analytic, rel=1e-2)


def test_large_batch_floor_hides_the_blog_bug_and_the_suggested_floor_catches_it(tmp_path):
    """At N = 64 every gradient is below 0.02, so Caffe's rule (floor 1) tolerates errors of 0.01."""
    big = {"scores": (64, 5), "labels": (64, 5)}
    blog = loss_net(tmp_path, python_layer("BlogSoftmaxLossLayer", module="blog_softmax_loss_layer"), big)
    ours = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), big, name="ours")
    fills = {"labels": REAL}
    loose = check_layer_gradient(blog, "loss", fills=fills)
    assert loose.passed                                    # the weakness of the rule at this batch size ...
    floor = loose.checks[0].suggested_floor
    assert 0 < floor < 0.1, format_report(loose)           # ... which the report points out
    assert "see the notes for why it is weak here" in format_report(loose)
    assert "use --floor %g" % floor in format_report(loose)
    assert not check_layer_gradient(blog, "loss", fills=fills, floor=floor).passed
    with warns_if(True):                                   # our layer says real labels above 1 and "count"
        strict = check_layer_gradient(ours, "ours", fills=fills, floor=floor)
    assert strict.passed and strict.checks[0].suggested_floor == 0, format_report(strict)


def test_gradients_below_float_resolution_are_reported_unresolved(tmp_path):
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), {"scores": (256, 300), "labels": (256, 300)})
    report = check_layer_gradient(net, "loss", fills={"labels": BINARY}, max_elements=50)
    assert report.checks[0].unresolved, format_report(report)
    assert "central differences cannot resolve these gradients" in format_report(report)


def test_non_loss_layer_uses_a_seeded_random_projection(tmp_path):
    path = tmp_path / "ip.prototxt"
    path.write_text(input_layer("w", (3, 4)) + input_layer("x", (3, 4)) + input_layer("y", (3, 4)) +
                    'layer { name: "ip" type: "InnerProduct" bottom: "w" top: "ip" '
                    'inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } } }\n'
                    'layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "y" top: "sum" '
                    'eltwise_param { operation: PROD } }\n')
    report = check_layer_gradient(str(path), "ip")
    assert report.passed, format_report(report)
    assert report.objective == "J = sum(R_ip * ip), R ~ N(0, 1) seeded"
    both = check_layer_gradient(str(path), "sum")           # not a loss: every bottom by default
    assert both.passed and [b.blob for b in both.checks] == ["x", "y"], format_report(both)


def test_in_place_relu_gets_its_own_top_and_kinks_are_skipped(tmp_path):
    path = tmp_path / "relu.prototxt"
    path.write_text(input_layer("x", (4, 5)) + 'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }\n')
    report = check_layer_gradient(str(path), "relu", fills={"x": "uniform:-1:1"}, kink_range=0.02)
    assert report.passed, format_report(report)
    assert any("in-place layer" in note for note in report.notes)
    assert report.checks[0].checked + report.checks[0].kinks_skipped == 20


def test_data_layers_fill_the_net(tmp_path):
    """The smoke net's own Python data layer fills the bottoms; checks the loss and the InnerProduct."""
    smoke = str(REPO / "prototxt" / "smoke" / "train.prototxt")
    for layer in ("loss", "scores"):
        report = check_layer_gradient(smoke, layer)
        assert report.passed, format_report(report)


def test_large_bottoms_check_a_seeded_subset(tmp_path):
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), {"scores": (8, 50), "labels": (8, 50)})
    runs = [check_layer_gradient(net, "loss", fills={"labels": BINARY}, max_elements=30, seed=s) for s in (1, 1, 2)]
    assert all(r.passed for r in runs)
    assert [r.checks[0].checked for r in runs] == [30, 30, 30]
    assert runs[0].checks[0] == runs[1].checks[0] != runs[2].checks[0]
    assert any("seeded random subset of 30 of its 400 elements (seed 1" in note for note in runs[0].notes)


class BackwardForgetsDiffLayer(caffe.Layer):
    """Loss = sum(x); its backward never writes bottom[0].diff."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data.sum()

    def backward(self, top, propagate_down, bottom):
        pass


def test_a_bottom_diff_the_layer_never_writes_fails(tmp_path):
    net = loss_net(tmp_path, python_layer("BackwardForgetsDiffLayer", module="test_gradcheck"), {"x": (2, 3)})
    report = check_layer_gradient(net, "loss")
    assert not report.passed
    assert report.checks[0].non_finite_analytic == 6
    assert "6 non-finite values in the layer's gradient" in format_report(report)


@pytest.mark.parametrize("kwargs,fragments", [
    ({"layer_name": "nope"}, ["no layer named 'nope'", "scores, labels, loss"]),
    ({"bottoms": [2]}, ["--bottom 2 out of range", "2 bottom(s) (scores, labels)"]),
    ({"fills": {"loss": "gaussian"}}, ["loss: not an input blob", "scores, labels"]),
    ({"fills": {"labels": "poisson:3"}}, ["fill 'poisson:3'", "bernoulli:P"]),
    ({"fills": {"labels": "constant:0"}}, ["layer 'loss' forward failed", "ZeroDivisionError"]),
    ({"phase": "deploy"}, ["phase must be one of train, test"]),
])
def test_errors_say_what_is_wrong(tmp_path, kwargs, fragments):
    net = loss_net(tmp_path, python_layer("BlogSoftmaxLossLayer", module="blog_softmax_loss_layer"), SCORES_LABELS)
    kwargs = {"layer_name": "loss", **kwargs}
    with pytest.raises(GradcheckError) as info:
        check_layer_gradient(net, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_unknown_layer_type_and_bad_prototxt_are_errors_not_crashes(tmp_path):
    bad_type = tmp_path / "bad_type.prototxt"
    bad_type.write_text(input_layer("x", (2, 3)) + 'layer { name: "l" type: "Softmaxx" bottom: "x" top: "y" }\n')
    with pytest.raises(GradcheckError, match=r"no layer type.*Softmaxx"):
        check_layer_gradient(str(bad_type), "l")
    bad_text = tmp_path / "bad_text.prototxt"
    bad_text.write_text("layer { name: ")
    with pytest.raises(GradcheckError, match="not a valid Caffe net prototxt"):
        check_layer_gradient(str(bad_text), "l")


def test_prepare_sets_force_backward_and_propagate_down():
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Merge('layer { name: "loss" type: "Python" bottom: "s" bottom: "l" top: "loss" '
                            'loss_weight: 1 propagate_down: false propagate_down: false }', caffe_pb2.NetParameter())
    net, bottoms, notes = prepare_net_param(net, "loss", [1])
    assert net.force_backward and bottoms == [1] and notes == []
    assert list(net.layer[0].propagate_down) == [False, True]


def test_parse_fill_specs():
    rng = np.random.default_rng(0)
    assert set(np.unique(parse_fill("randint:2:4")(rng, (100,)))) == {2, 3}
    assert parse_fill("constant:1.5")(rng, (2,)).tolist() == [1.5, 1.5]
    values = parse_fill("uniform:-2:-1")(rng, (100,))
    assert values.min() >= -2 and values.max() < -1
    assert abs(parse_fill("gaussian:10")(rng, (10000,)).std() - 10) < 0.5


class ScaleByParamLayer(caffe.Layer):
    """y = w * x with a learnable scalar w; param_str "wrong" doubles dJ/dw."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 1.5
        self.factor = 2.0 if self.param_str == "wrong" else 1.0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff
        self.blobs[0].diff[...] += self.factor * np.sum(bottom[0].data * top[0].diff)   # params accumulate


@pytest.mark.parametrize("param_str,passed", [("", True), ("wrong", False)])
def test_parameter_blobs_are_checked_with_check_params(tmp_path, param_str, passed):
    net = loss_net(tmp_path, python_layer("ScaleByParamLayer", param_str, module="test_gradcheck"), {"x": (3, 4)},
                   loss_weight=None, name="scale")
    report = check_layer_gradient(net, "scale", check_params=True)
    assert [(c.role, c.blob, c.checked) for c in report.checks] == [("bottom", "x", 12), ("param", "scale[0]", 1)]
    assert report.checks[0].passed
    assert report.checks[1].passed is passed, format_report(report)
    assert report.passed is passed
    assert check_layer_gradient(net, "scale").passed          # without check_params only the bottom counts


def test_caffe_inner_product_weights_and_bias_pass(tmp_path):
    path = tmp_path / "ip.prototxt"
    path.write_text(input_layer("x", (3, 4)) + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
                    'inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } '
                    'bias_filler { type: "gaussian" std: 1 } } }\n')
    report = check_layer_gradient(str(path), "ip", check_params=True)
    assert report.passed, format_report(report)
    assert [(c.role, c.shape) for c in report.checks] == [("bottom", (3, 4)), ("param", (5, 4)), ("param", (5,))]


def test_default_gaussian_labels_get_a_hint(tmp_path):
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), SCORES_LABELS)
    with pytest.raises(GradcheckError) as info:
        check_layer_gradient(net, "loss")
    message = str(info.value)
    assert "layer 'loss' forward failed: MultilabelLossError: SoftmaxMultilabelLossLayer: labels" in message
    assert "input blob(s) scores, labels were filled with N(0, 1)" in message and "--fill BLOB=SPEC" in message


def test_weights_file_and_npy_fill_are_used(tmp_path):
    """InnerProduct weights default to 0: only with the saved .caffemodel is dJ/dx non-zero."""
    path = tmp_path / "ip.prototxt"
    path.write_text(input_layer("x", (2, 3)) + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
                    'inner_product_param { num_output: 4 bias_term: false } }\n')
    net = caffe.Net(str(path), caffe.TEST)
    net.params["ip"][0].data[...] = np.arange(12).reshape(4, 3)
    weights = tmp_path / "ip.caffemodel"
    net.save(str(weights))
    x = tmp_path / "x.npy"
    np.save(x, np.full((2, 3), 0.5))
    with_weights = check_layer_gradient(str(path), "ip", weights=str(weights), fills={"x": str(x)}, phase="test")
    without = check_layer_gradient(str(path), "ip", fills={"x": str(x)}, phase="test")
    assert with_weights.passed and without.tested_nothing and not without.passed      # all 0: nothing tested
    assert with_weights.checks[0].largest_gradient > 1 and without.checks[0].largest_gradient == 0
    with pytest.raises(GradcheckError, match=r"input blob 'x' has shape \(2, 3\), the fill gave \(4,\)"):
        np.save(x, np.zeros(4))
        check_layer_gradient(str(path), "ip", fills={"x": str(x)})


def test_a_blob_of_kinks_only_is_reported_not_failed(tmp_path):
    path = tmp_path / "relu.prototxt"
    path.write_text(input_layer("x", (2, 3)) + input_layer("y", (2, 3)) +
                    'layer { name: "relu" type: "ReLU" bottom: "x" top: "r" }\n')
    report = check_layer_gradient(str(path), "relu", fills={"x": "constant:0"}, kink_range=0.01)
    assert not report.passed                           # nothing at all was checked
    assert "none checked" in format_report(report)
    assert "every selected element is within the kink range" in format_report(report)
    path.write_text(input_layer("x", (2, 3)) + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
                    'inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }\n')
    report = check_layer_gradient(str(path), "ip", check_params=True, kink_range=0.001)
    assert [c.checked for c in report.checks] == [6, 6, 0]       # the bias is all zeros: all kinks
    assert report.passed, format_report(report)


def test_all_zero_gradients_say_nothing_was_tested(tmp_path, capsys):
    # No weight_filler: Caffe's default filler is constant 0, so the bottom gradient W^T dJ/dy is exactly 0.
    net = loss_net(tmp_path, 'type: "InnerProduct" inner_product_param { num_output: 3 }', {"x": (2, 4)},
                   loss_weight=None, name="fc")
    report = check_layer_gradient(net, "fc")
    assert report.tested_nothing and not report.passed
    text = format_report(report)
    assert text.rstrip().endswith("gradient check TESTED NOTHING: every analytic and numeric value was 0")
    assert "ALL ZERO" in text and "exactly 0, so nothing was tested" in text and "PASS" not in text
    from softmax_multilabel_layer.cli import main
    assert main(["gradcheck", net, "--layer", "fc"]) == 1
    capsys.readouterr()
    # With a filler the same layer is tested and passes; its weights' gradient (x R) is non-zero either way.
    filled = loss_net(tmp_path, 'type: "InnerProduct" inner_product_param { num_output: 3 '
                      'weight_filler { type: "gaussian" std: 1 } }', {"x": (2, 4)}, loss_weight=None, name="fc2")
    assert check_layer_gradient(filled, "fc2").passed
    partly = check_layer_gradient(net, "fc", check_params=True)
    assert partly.passed and not partly.tested_nothing
    assert [c.all_zero for c in partly.checks] == [True, False, False]


@pytest.mark.parametrize("loss_weight", [None, 0])
def test_python_loss_layer_without_loss_weight_is_explained_and_checked_as_a_loss(tmp_path, loss_weight):
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), SCORES_LABELS, loss_weight=loss_weight)
    report = check_layer_gradient(net, "loss", fills={"labels": BINARY})
    text = format_report(report)
    assert "labels must be" not in text
    assert "layer 'loss' (Python SoftmaxMultilabelLossLayer) has no loss_weight" in text
    assert ("(it is 0)" in text) == (loss_weight == 0)
    assert "the net would not train from it; add loss_weight: 1 to the layer" in text
    assert "This check gives it loss_weight: 1" in text
    assert [c.blob for c in report.checks] == ["scores"]              # not the labels
    assert report.objective == "J = 1 * sum(loss)" and report.passed


def test_verdict_says_the_loss_weight_was_assumed(tmp_path):
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), SCORES_LABELS, loss_weight=None)
    text = format_report(check_layer_gradient(net, "loss", fills={"labels": BINARY}))
    assert text.splitlines()[-1] == ("gradient check PASSED (with loss_weight: 1, which the prototxt lacks: "
                                     "see the note)")
    net = loss_net(tmp_path, python_layer("SoftmaxMultilabelLossLayer"), SCORES_LABELS, loss_weight=1, name="l1")
    assert format_report(check_layer_gradient(net, "l1", fills={"labels": BINARY})).splitlines()[-1] == \
        "gradient check PASSED"
