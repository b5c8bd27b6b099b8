"""Every misuse gets a clear MultilabelLossError, through the numpy core and through a real caffe.Net.

A message names the layer (or core function), the blob or option, the value
or shape found, and what was expected. Wiring and option errors surface when
the net is built (setup/reshape), before any forward pass.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from softmax_multilabel_layer.losses import functional as F
from softmax_multilabel_layer.params import (
    ImageDataOptions,
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    parse_param_str,
)

from caffe_nets import python_loss_net, run

SOFTMAX = "SoftmaxMultilabelLossLayer"
SIGMOID = "SigmoidMultilabelLossLayer"
CORE = {SOFTMAX: "softmax_multilabel_forward", SIGMOID: "sigmoid_multilabel_forward"}
REPO = Path(__file__).resolve().parents[1]


def scores(n=4, c=5):
    return np.random.default_rng(0).normal(size=(n, c)).astype(np.float32)


def binary(n=4, c=5):
    labels = np.zeros((n, c), np.float32)
    labels[:, 1] = 1
    return labels


def big_scores(n=64, c=1000):
    """A trained-like batch: one confident positive (margin 12) per sample."""
    rng = np.random.default_rng(1)
    s = rng.normal(0, 0.5, (n, c)).astype(np.float32)
    s[np.arange(n), np.arange(n) * 7 % c] += 12
    return s


def big_labels(n=64, c=1000):
    """0.1 % non-zeros: the sparse label path."""
    labels = np.zeros((n, c), np.float32)
    labels[np.arange(n), np.arange(n) * 7 % c] = 1
    return labels


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


# (id, layer, params, inputs, fragments expected in the message)
OPTION_CASES = [
    ("unknown-key", SOFTMAX, {"normalisation": "full"}, ["unknown", "normalisation", "known", "normalization"]),
    ("unknown-key-sigmoid", SIGMOID, {"gama": 2}, ["unknown", "gama", "gamma", "pos_weight"]),
    ("bad-normalization", SOFTMAX, {"normalization": "mean"}, ["normalization", "'mean'", '"batch_size"', '"valid"']),
    ("bad-normalization-sigmoid", SIGMOID, {"normalization": "mean"}, ["normalization", "'mean'", '"full"']),
    ("bad-normalize-targets", SOFTMAX, {"normalize_targets": "l1"}, ["normalize_targets", "'l1'", '"count"']),
    ("bad-label-format", SOFTMAX, {"label_format": "sparse"}, ["label_format", "'sparse'", '"indices"']),
    ("smoothing-one", SOFTMAX, {"label_smoothing": 1.0}, ["label_smoothing", "[0.0, 1.0)", "1.0"]),
    ("smoothing-negative", SOFTMAX, {"label_smoothing": -0.1}, ["label_smoothing", "-0.1"]),
    ("smoothing-string", SOFTMAX, {"label_smoothing": "0.1"}, ["label_smoothing", "number", "'0.1'"]),
    ("axis-float", SOFTMAX, {"axis": 1.5}, ["axis", "integer", "1.5"]),
    ("gamma-negative", SIGMOID, {"gamma": -1}, ["gamma", "-1"]),
    ("alpha-too-big", SIGMOID, {"alpha": 2}, ["alpha", "2"]),
    ("pos-weight-negative", SIGMOID, {"pos_weight": -2}, ["pos_weight", "-2"]),
    ("class-weight-scalar", SIGMOID, {"class_weight": 2}, ["class_weight", "list"]),
    ("pos-weight-length", SIGMOID, {"pos_weight": [1, 2, 3]}, ["pos_weight", "3 values", "C=5"]),
    ("class-weight-length", SIGMOID, {"class_weight": [1] * 6}, ["class_weight", "6 values", "C=5"]),
    ("axis-out-of-range", SOFTMAX, {"axis": 2}, ["axis 2", "out of range", "(4, 5)"]),
    ("axis-out-of-range-sigmoid", SIGMOID, {"axis": -3}, ["axis -3", "out of range", "(4, 5)"]),
    ("sigmoid-option-to-softmax", SOFTMAX, {"gamma": 2},
     ["unknown", "gamma", "gamma is an option of SigmoidMultilabelLossLayer", "not of SoftmaxMultilabelLossLayer"]),
    ("sigmoid-options-to-softmax", SOFTMAX, {"pos_weight": 2, "ignore_label": -1},
     ["ignore_label, pos_weight are an option of SigmoidMultilabelLossLayer"]),
    ("softmax-option-to-sigmoid", SIGMOID, {"label_smoothing": 0.1},
     ["label_smoothing is an option of SoftmaxMultilabelLossLayer", "not of SigmoidMultilabelLossLayer"]),
    ("unknown-key-no-other-layer-hint", SOFTMAX, {"bogus": 1}, ["unknown", "bogus"]),
    # label_format belongs to the softmax loss and to the image data layer (which has no core function)
    ("shared-option-to-sigmoid", SIGMOID, {"label_format": "dense"},
     ["label_format is an option of SoftmaxMultilabelLossLayer (core function softmax_multilabel_forward)",
      "label_format is an option of MultilabelImageDataLayer, not of SigmoidMultilabelLossLayer"]),
]


def test_loss_option_given_to_the_image_data_layer_names_both_layers():
    with pytest.raises(MultilabelLossError) as info:
        ImageDataOptions.from_param_str('{"source": "train.txt", "num_classes": 2, "gamma": 1}', "x")
    assert str(info.value).endswith("gamma is an option of SigmoidMultilabelLossLayer (core function "
                                    "sigmoid_multilabel_forward), not of MultilabelImageDataLayer"), str(info.value)


def core_forward(layer, inputs, params):
    fn = getattr(F, CORE[layer])
    return fn(*inputs, **params)


@pytest.mark.parametrize("case", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_option_errors_core(case):
    _, layer, params, fragments = case
    with pytest.raises(MultilabelLossError) as info:
        core_forward(layer, [scores(), binary()], params)
    message = str(info.value)
    assert message.startswith(CORE[layer] + ":"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("case", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_option_errors_net_at_setup(tmp_path, case):
    _, layer, params, fragments = case
    with pytest.raises(MultilabelLossError) as info:
        python_loss_net(tmp_path, layer, {"scores": (4, 5), "labels": (4, 5)}, params)
    message = str(info.value)
    assert message.startswith(layer + ":"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("layer", [SOFTMAX, SIGMOID])
@pytest.mark.parametrize("param_str,fragments", [
    ("{normalization: full}", ["neither JSON nor a Python dict literal", "{normalization: full}"]),
    ("[1, 2]", ["must be a JSON object", "list"]),
    ('__import__("os").getcwd()', ["neither JSON nor a Python dict literal"]),
])
def test_bad_param_str(tmp_path, layer, param_str, fragments):
    with pytest.raises(MultilabelLossError) as info:
        python_loss_net(tmp_path, layer, {"scores": (4, 5), "labels": (4, 5)}, param_str)
    for fragment in [layer] + fragments:
        assert fragment in str(info.value)


def test_no_other_layer_hint_for_keys_of_neither_layer():
    with pytest.raises(MultilabelLossError) as info:
        F.softmax_multilabel_forward(scores(), binary(), bogus=1)
    assert "an option of" not in str(info.value)


def test_param_str_accepts_json_and_dict_literal():
    keys = SoftmaxOptions.keys()
    assert parse_param_str('{"axis": 1, "normalization": "full"}', "L", keys) == {"axis": 1, "normalization": "full"}
    assert parse_param_str("{'axis': 1, 'label_smoothing': 0.1}", "L", keys) == {"axis": 1, "label_smoothing": 0.1}
    assert parse_param_str("  ", "L", keys) == {}
    assert SoftmaxOptions.from_param_str("", "L") == SoftmaxOptions(owner="L")
    with pytest.raises(MultilabelLossError, match=r"L: param_str is neither JSON nor a Python dict literal"):
        parse_param_str("{axis: 1}", "L", keys)
    with pytest.raises(MultilabelLossError, match=r"L: unknown param_str key\(s\) ax; known keys: normalize_targets"):
        SoftmaxOptions.from_param_str('{"ax": 1}', "L")


# ---------------------------------------------------------------- wiring

@pytest.mark.parametrize("layer,inputs,tops,fragments", [
    (SOFTMAX, {"scores": (4, 5)}, (), ["got 1 bottoms", "expected 2", "scores, labels"]),
    (SOFTMAX, {"scores": (4, 5), "labels": (4, 5), "w": (4, 5)}, (), ["got 3 bottoms", "expected 2"]),
    (SIGMOID, {"scores": (4, 5), "labels": (4, 5), "w": (4, 5)}, (), ["got 3 bottoms", "expected 2",
                                                                       "scores, targets"]),
    (SOFTMAX, {"scores": (4, 5), "labels": (4, 5)}, ("p", "q"), ["got 3 tops", "expected 1 (loss) or 2"]),
    (SIGMOID, {"scores": (4, 5), "labels": (4, 5)}, ("p", "q"), ["got 3 tops"]),
    (SOFTMAX, {"scores": (32, 10), "labels": (32, 9)}, (),
     ["labels shape (32, 9) does not match scores shape (32, 10)"]),
    (SIGMOID, {"scores": (32, 10), "labels": (32, 9)}, (),
     ["targets shape (32, 9) does not match scores shape (32, 10)"]),
])
def test_wiring_errors_at_net_construction(tmp_path, layer, inputs, tops, fragments):
    with pytest.raises(MultilabelLossError) as info:
        python_loss_net(tmp_path, layer, inputs, {}, extra_tops=tops)
    for fragment in [layer + ":"] + fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_indices_wrong_shape(tmp_path):
    with pytest.raises(MultilabelLossError, match=r"SoftmaxMultilabelLossLayer: labels \(indices format\) shape "
                                                  r"\(3, 2\) does not fit scores shape \(4, 5\)"):
        python_loss_net(tmp_path, SOFTMAX, {"scores": (4, 5), "labels": (3, 2)}, {"label_format": "indices"})
    with pytest.raises(MultilabelLossError, match=r"label_weights shape \(4, 3\) does not match labels shape"):
        python_loss_net(tmp_path, SOFTMAX, {"scores": (4, 5), "labels": (4, 2), "w": (4, 3)},
                        {"label_format": "indices"})
    with pytest.raises(MultilabelLossError, match=r"softmax_multilabel_forward: labels \(indices format\) shape"):
        F.softmax_multilabel_forward(scores(), np.zeros((3, 2)), label_format="indices")
    with pytest.raises(MultilabelLossError, match=r'^softmax_multilabel_forward: label_weights are only used with '
                                                  r'label_format "indices"$'):
        F.softmax_multilabel_forward(scores(), binary(), np.ones((4, 5)))
    with pytest.raises(MultilabelLossError, match=r"^softmax_multilabel_forward: label_weights shape \(2, 4\) does "
                                                  r"not match labels shape \(4, 2\)$"):
        F.softmax_multilabel_forward(scores(), np.zeros((4, 2)), np.ones((2, 4)), label_format="indices")


@pytest.mark.parametrize("blob,scores_dtype,labels_dtype", [("scores", np.int64, np.float32),
                                                            ("scores", np.bool_, np.float32),
                                                            ("labels", np.float32, np.complex64),
                                                            ("labels", np.float32, "<U32")])
def test_dtype_errors(blob, scores_dtype, labels_dtype):
    """Scores must be float32 or float64 (integer scores are refused); labels may be integer or bool, not others."""
    s, y = scores().astype(scores_dtype), binary().astype(labels_dtype)
    for fn, name in ((F.softmax_multilabel_forward, blob), (F.sigmoid_multilabel_forward, blob.replace("labels",
                                                                                                         "targets"))):
        with pytest.raises(MultilabelLossError, match=r"^%s: %s must be float32 or float64, got %s$"
                                                      % (fn.__name__, name, np.dtype(scores_dtype if blob == "scores"
                                                                                     else labels_dtype))):
            fn(s, y)


def test_integer_and_bool_labels_are_read_as_numbers():
    expected = F.softmax_multilabel_loss(scores(), binary())
    for dtype in (np.int32, np.bool_):
        got = F.softmax_multilabel_loss(scores(), binary().astype(dtype))
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_empty_blobs():
    with pytest.raises(MultilabelLossError, match=r"^softmax_multilabel_forward: scores is empty \(shape \(0, 5\)\)$"):
        F.softmax_multilabel_forward(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32))


def test_scores_beyond_the_float32_range_give_a_clear_error():
    """s - m overflows to -inf when the scores span more than the float32 range: the loss is refused, not inf."""
    s = np.array([[3e38, -3e38, 0.0]], np.float32)
    with pytest.raises(MultilabelLossError, match=r"^softmax_multilabel_forward: the loss is not finite in float32 "
                                                  r"\(inf\) although scores and labels are: the scores span more "
                                                  r"than the float32 range, or the labels are too large$"):
        F.softmax_multilabel_forward(s, np.array([[0, 1, 0]], np.float32))


@pytest.mark.parametrize("label_shape", [(8, 6, 1, 1), (8, 6, 1)])
def test_labels_with_trailing_unit_axes_are_accepted(tmp_path, label_shape):
    """N x C x 1 x 1 labels (a label Data layer or a 4-D HDF5 dataset) against N x C scores: same result."""
    rng = np.random.default_rng(2)
    s = rng.normal(size=(8, 6)).astype(np.float32)
    y = (rng.random((8, 6)) < 0.4).astype(np.float32)
    for forward, name in ((F.softmax_multilabel_loss, SOFTMAX), (F.sigmoid_multilabel_loss, SIGMOID)):
        expected = forward(s, y)
        got = forward(s, y.reshape(label_shape))
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
        net = python_loss_net(tmp_path, name, {"scores": (8, 6), "labels": label_shape})
        loss, grad = run(net, {"scores": s, "labels": y.reshape(label_shape)})
        assert loss == pytest.approx(expected[0], rel=1e-6)
        np.testing.assert_allclose(grad, expected[1], atol=1e-7)
    # the other way round, scores N x C x 1 x 1 and labels N x C; and a negative class axis
    got = F.softmax_multilabel_loss(s.reshape(8, 6, 1, 1), y, axis=1)
    assert got[0] == F.softmax_multilabel_loss(s, y)[0]
    for forward in (F.softmax_multilabel_loss, F.sigmoid_multilabel_loss):
        got = forward(s, y.reshape(label_shape), axis=-1)
        expected = forward(s, y, axis=-1)
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("layer,blob", [(SOFTMAX, "labels"), (SIGMOID, "targets")])
def test_shape_change_after_valid_iterations_is_refused(tmp_path, layer, blob):
    """reshape checks the shapes only when they change: a change after good iterations is still handled.

    A new batch size resizes the probabilities top; a label shape that no longer fits is refused.
    """
    rng = np.random.default_rng(4)
    net = python_loss_net(tmp_path, layer, {"scores": (8, 6), "labels": (8, 6)}, extra_tops=("prob",))
    for n in (8, 8, 5):
        net.blobs["scores"].reshape(n, 6)
        net.blobs["labels"].reshape(n, 6)
        run(net, {"scores": rng.normal(size=(n, 6)), "labels": (rng.random((n, 6)) < 0.4)})
        assert net.blobs["prob"].data.shape == (n, 6)
    net.blobs["labels"].reshape(5, 5)
    with pytest.raises(MultilabelLossError, match=r"%s: %s shape \(5, 5\) does not match scores shape \(5, 6\)"
                       % (layer, blob)):
        net.forward()


@pytest.mark.parametrize("layer,label_shape,fragments", [
    (SOFTMAX, (8, 6, 2), ["labels shape (8, 6, 2) does not match scores shape (8, 6)"]),
    (SOFTMAX, (8, 1, 6), ["labels shape (8, 1, 6) does not match"]),
    (SOFTMAX, (8,), ["labels shape (8,) does not match scores shape (8, 6)", "one class index per sample",
                     '"label_format": "indices"', "N x K", "padded with -1"]),
    (SOFTMAX, (8, 1), ['"label_format": "indices"']),
    (SIGMOID, (8,), ["targets shape (8,) does not match", "one class index per sample", "dense_from_indices"]),
])
def test_real_shape_mismatches_are_refused_with_hints(tmp_path, layer, label_shape, fragments):
    with pytest.raises(MultilabelLossError) as info:
        python_loss_net(tmp_path, layer, {"scores": (8, 6), "labels": label_shape})
    for fragment in [layer + ":"] + fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    if layer == SIGMOID:
        assert "indices" not in str(info.value).split("dense_from_indices")[0]


def test_options_object_and_keywords_together_are_refused():
    options = SoftmaxOptions(owner="x", normalization="full")
    with pytest.raises(MultilabelLossError, match=r"softmax_multilabel_forward: options= was given together with "
                                                  r"keyword option\(s\) bogus, normalization"):
        F.softmax_multilabel_forward(scores(), binary(), options=options, normalization="none", bogus=1)
    with pytest.raises(MultilabelLossError, match=r"sigmoid_multilabel_forward: options= was given together"):
        F.sigmoid_multilabel_forward(scores(), binary(), options=options, gamma=2)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(MultilabelLossError, match=r"sigmoid_multilabel_forward: options must be a SigmoidOptions, "
                                                  r"got SoftmaxOptions"):
        F.sigmoid_multilabel_forward(scores(), binary(), options=options)  # type: ignore[arg-type]  # on purpose


@pytest.mark.parametrize("forward,backward,probabilities", [
    (F.softmax_multilabel_forward, F.softmax_multilabel_backward, F.softmax_probabilities),
    (F.sigmoid_multilabel_forward, F.sigmoid_multilabel_backward, F.sigmoid_probabilities),
])
def test_out_must_be_a_contiguous_array_of_the_scores_shape(forward, backward, probabilities):
    _, ctx = forward(scores(), binary())
    expected = backward(ctx)
    for fn in (backward, probabilities):
        name = fn.__name__
        for bad, fragment in [(np.zeros((5, 4), np.float32).T, "not C-contiguous"),
                              (np.zeros((4, 5), np.float64), "float64 array of shape (4, 5)"),
                              (np.zeros((20,), np.float32), "float32 array of shape (20,)"),
                              ([[0.0] * 5] * 4, "got list")]:
            with pytest.raises(MultilabelLossError) as info:
                fn(ctx, out=bad)
            message = str(info.value)
            assert message.startswith(name + ": out must be a writeable C-contiguous float32 array of shape (4, 5)")
            assert fragment in message, (fragment, message)
    out = np.full((4, 5), np.nan, np.float32)
    assert backward(ctx, out=out) is out and np.array_equal(out, expected)


@pytest.mark.parametrize("forward,backward,probabilities", [
    (F.softmax_multilabel_forward, F.softmax_multilabel_backward, F.softmax_probabilities),
    (F.sigmoid_multilabel_forward, F.sigmoid_multilabel_backward, F.sigmoid_probabilities),
])
def test_a_second_forward_on_the_workspace_makes_the_first_context_stale(forward, backward, probabilities):
    ws = F.Workspace()
    _, first = forward(scores(), binary(), workspace=ws)
    _, second = forward(scores() * 2, binary(), workspace=ws)
    for fn in (backward, probabilities):
        with pytest.raises(MultilabelLossError, match=r"%s: this context is stale: forward pass 2 on its Workspace "
                                                      r"has run since it was made \(pass 1\)" % fn.__name__):
            fn(first)
    fresh = forward(scores() * 2, binary())[1]
    np.testing.assert_array_equal(backward(second), backward(fresh))


def test_core_shape_mismatch():
    with pytest.raises(MultilabelLossError, match=r"softmax_multilabel_forward: labels shape \(4, 4\) does not match "
                                                  r"scores shape \(4, 5\)"):
        F.softmax_multilabel_forward(scores(), binary(4, 4))
    with pytest.raises(MultilabelLossError, match=r"targets shape \(4, 4\) does not match"):
        F.sigmoid_multilabel_forward(scores(), binary(4, 4))


# ---------------------------------------------------------------- values

VALUE_CASES = [
    ("negative-label", SOFTMAX, {}, [scores(), with_value(binary(), (2, 3), -1)],
     ["labels", "finite and >= 0", "-1.0", "labels[2, 3] (sample 2, class 3)"]),
    ("nan-label", SOFTMAX, {}, [scores(), with_value(binary(), (1, 0), np.nan)], ["labels", "nan"]),
    ("inf-label", SOFTMAX, {}, [scores(), with_value(binary(), (1, 0), np.inf)], ["labels", "inf"]),
    ("negative-dense-real-labels", SOFTMAX, {}, [scores(), with_value(np.ones((4, 5), np.float32), (3, 4), -2)],
     ["labels", "-2.0", "labels[3, 4] (sample 3, class 4)"]),
    ("inf-dense-real-labels", SOFTMAX, {}, [scores(), with_value(np.ones((4, 5), np.float32), (0, 1), np.inf)],
     ["labels", "inf"]),
    ("index-too-big", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0, -1], [5, 1], [2, -1], [3, 4]], np.float32)],
     ["label index 5.0", "labels[1, 0] (sample 1, slot 0)", "[0, C-1] = [0, 4]", "-1 for padding"]),
    ("index-below-minus-one", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0, -1], [-2, 1], [2, -1], [3, 4]], np.float32)], ["label index -2.0"]),
    ("index-fraction", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0.5, -1], [0, 1], [2, -1], [3, 4]], np.float32)], ["label index 0.5"]),
    ("index-duplicate", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0, -1], [1, 1], [2, -1], [3, 4]], np.float32)],
     ["label index 1 appears twice", "labels[1, 1] (sample 1, slot 1)"]),
    ("index-negative-weight", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0, -1], [1, 2], [2, -1], [3, 4]], np.float32),
      np.array([[1, 0], [1, -1], [1, 0], [1, 1]], np.float32)],
     ["label_weights", "-1.0", "label_weights[1, 1] (sample 1, slot 1)"]),
    ("nan-scores", SOFTMAX, {}, [with_value(scores(), (1, 2), np.nan), binary()],
     ["scores are not finite", "nan", "scores[1, 2] (sample 1, class 2)", "diverged"]),
    ("inf-scores", SOFTMAX, {}, [with_value(scores(), (0, 4), np.inf), binary()], ["scores are not finite", "inf"]),
    ("minus-inf-scores", SOFTMAX, {}, [with_value(scores(), (3, 0), -np.inf), binary()],
     ["scores are not finite", "-inf", "scores[3, 0] (sample 3, class 0)"]),
    ("minus-inf-scores-indices", SOFTMAX, {"label_format": "indices"},
     [with_value(scores(), (3, 0), -np.inf), np.ones((4, 1), np.float32)], ["scores are not finite"]),
    ("sigmoid-target-above-one", SIGMOID, {}, [scores(), with_value(binary(), (0, 0), 2)],
     ["targets must be in [0, 1]", "2.0", "targets[0, 0] (sample 0, class 0)"]),
    ("sigmoid-target-negative-focal", SIGMOID, {"gamma": 2}, [scores(), with_value(binary(), (0, 0), -1)],
     ["targets must be in [0, 1]", "-1.0"]),
    ("sigmoid-target-nan", SIGMOID, {}, [scores(), with_value(binary(), (0, 0), np.nan)], ["targets", "nan"]),
    ("sigmoid-target-not-ignore", SIGMOID, {"ignore_label": 255}, [scores(), with_value(binary(), (0, 0), -1)],
     ["or equal to ignore_label 255.0", "-1.0"]),
    ("sigmoid-nan-scores", SIGMOID, {}, [with_value(scores(), (2, 2), np.nan), binary()],
     ["scores are not finite", "scores[2, 2] (sample 2, class 2)"]),
    ("sigmoid-minus-inf-scores", SIGMOID, {"gamma": 2}, [with_value(scores(), (2, 2), -np.inf), binary()],
     ["scores are not finite", "-inf"]),
    ("sigmoid-inf-scores", SIGMOID, {}, [with_value(scores(), (2, 2), np.inf), binary()], ["scores are not finite"]),
    # labels whose sum overflows float32 although each is finite (dense path, then sparse path)
    ("overflowing-labels-dense", SOFTMAX, {}, [scores(), with_value(np.full((4, 5), 3e38, np.float32), (1, 1), 1)],
     ["labels of sample 0 sum to inf", "beyond the largest float32"]),
    ("overflowing-labels-sparse", SOFTMAX, {"normalize_targets": "none"},
     [big_scores(), with_value(with_value(big_labels(), (9, 1), 3e38), (9, 2), 3e38)],
     ["labels of sample 9 sum to 6e+38", "beyond the largest float32"]),
    ("overflowing-labels-indices", SOFTMAX, {"label_format": "indices"},
     [scores(), np.array([[0, 1], [0, 1], [2, -1], [3, 4]], np.float32),
      np.array([[1, 1], [3e38, 3e38], [1, 0], [1, 1]], np.float32)], ["labels of sample 1 sum to 6e+38"]),
    # an invalid label hidden in a large, sparse batch (the sparse label path)
    ("negative-label-sparse", SOFTMAX, {}, [big_scores(), with_value(big_labels(), (40, 700), -1)],
     ["labels must be finite and >= 0", "-1.0", "labels[40, 700] (sample 40, class 700)"]),
    ("nan-label-sparse", SOFTMAX, {}, [big_scores(), with_value(big_labels(), (63, 999), np.nan)],
     ["nan", "labels[63, 999] (sample 63, class 999)"]),
    ("inf-label-sparse", SOFTMAX, {}, [big_scores(), with_value(big_labels(), (5, 3), np.inf)],
     ["inf", "labels[5, 3] (sample 5, class 3)"]),
    ("index-too-big-large-batch", SOFTMAX, {"label_format": "indices"},
     [big_scores(), with_value(np.tile(np.array([[3, 17, -1]], np.float32), (64, 1)), (50, 2), 1000)],
     ["label index 1000.0", "labels[50, 2] (sample 50, slot 2)", "[0, 999]"]),
    # positions in the blob's own shape for a spatial blob
    ("negative-label-spatial", SOFTMAX, {}, [np.zeros((2, 3, 4, 5), np.float32),
                                            with_value(np.ones((2, 3, 4, 5), np.float32), (1, 2, 3, 4), -1)],
     ["labels[1, 2, 3, 4] (sample 1 at (3, 4), class 2)"]),
    ("sigmoid-target-spatial", SIGMOID, {}, [np.zeros((2, 3, 4), np.float32),
                                            with_value(np.zeros((2, 3, 4), np.float32), (0, 1, 2), 5)],
     ["targets[0, 1, 2] (sample 0 at (2), class 1)"]),
]


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_value_errors_core(case):
    _, layer, params, inputs, fragments = case
    with pytest.raises(MultilabelLossError) as info:
        core_forward(layer, inputs, params)
    for fragment in [CORE[layer] + ":"] + fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_value_errors_net(tmp_path, case):
    _, layer, params, inputs, fragments = case
    names = ["scores", "labels", "weights"][:len(inputs)]
    net = python_loss_net(tmp_path, layer, {n: a.shape for n, a in zip(names, inputs, strict=True)}, params)
    with pytest.raises(MultilabelLossError) as info:
        run(net, dict(zip(names, inputs, strict=True)))
    for fragment in [layer + ":"] + fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


# ---------------------------------------------------------------- through the CLI

def test_cli_train_prints_our_error_and_fails(tmp_path):
    caffe_tool = REPO / ".venv" / "bin" / "caffe"
    assert caffe_tool.exists(), "run `make setup` first: it writes .venv/bin/caffe"
    net = tmp_path / "bad_net.prototxt"
    net.write_text(
        'layer { name: "data" type: "DummyData" top: "scores" top: "labels"\n'
        '  dummy_data_param { shape { dim: 8 dim: 10 } shape { dim: 8 dim: 9 } } }\n'
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" loss_weight: 1\n'
        '  python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer" } }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 2\nsolver_mode: CPU\n'
                      'snapshot_prefix: "%s/snap"\n' % (net, tmp_path))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    result = subprocess.run([str(caffe_tool), "train", "--solver", str(solver)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert ("SoftmaxMultilabelLossLayer: labels shape (8, 9) does not match scores shape (8, 10)"
            in result.stdout + result.stderr), result.stderr[-3000:]


# ---------------------------------------------------------------- exact messages
# What the user reads, word for word, for one case of each message template (and of each way a position is
# written: one sample axis, several, none, spatial positions).

def softmax_core(*args, **kwargs):
    return lambda: F.softmax_multilabel_forward(*args, **kwargs)


def sigmoid_core(*args, **kwargs):
    return lambda: F.sigmoid_multilabel_forward(*args, **kwargs)


def stale_out(fn, out):
    def call():
        _, ctx = F.softmax_multilabel_forward(scores(), binary())
        fn(ctx, out=out)
    return call


READ_ONLY = np.zeros((4, 5), np.float32)
READ_ONLY.flags.writeable = False
READ_ONLY_T = np.zeros((5, 4), np.float32).T
READ_ONLY_T.flags.writeable = False


def stale_context():
    ws = F.Workspace()
    _, ctx = F.softmax_multilabel_forward(scores(), binary(), workspace=ws)
    F.softmax_multilabel_forward(scores(), binary(), workspace=ws)
    F.softmax_multilabel_backward(ctx)

EXACT_MESSAGES = [
    ("label-position", softmax_core(scores(), with_value(binary(), (2, 3), -1)),
     "softmax_multilabel_forward: labels must be finite and >= 0 (0 = negative), found -1.0 at labels[2, 3] "
     "(sample 2, class 3)"),
    ("label-position-two-sample-axes", softmax_core(np.zeros((2, 3, 5)), with_value(np.ones((2, 3, 5)), (1, 2, 4), -1),
                                                    axis=2),
     "softmax_multilabel_forward: labels must be finite and >= 0 (0 = negative), found -1.0 at labels[1, 2, 4] "
     "(sample (1, 2), class 4)"),
    ("label-position-class-axis-first", softmax_core(np.zeros((5, 4)), with_value(np.ones((5, 4)), (3, 2), np.nan),
                                                     axis=0),
     "softmax_multilabel_forward: labels must be finite and >= 0 (0 = negative), found nan at labels[3, 2] "
     "(sample at (2), class 3)"),
    ("scores-not-finite", softmax_core(with_value(scores(), (1, 2), np.inf), binary()),
     "softmax_multilabel_forward: scores are not finite: found inf at scores[1, 2] (sample 1, class 2); training "
     "has probably diverged: lower the learning rate or check the layers below"),
    ("index-invalid", softmax_core(scores(), np.array([[0, -1], [1, 2], [2, 7], [3, 4]]), label_format="indices"),
     "softmax_multilabel_forward: label index 7 at labels[2, 1] (sample 2, slot 1) is invalid; expected integers in "
     "[0, C-1] = [0, 4], or -1 for padding"),
    ("index-duplicate-past-the-first-slots", softmax_core(np.zeros((2, 9)), np.array([[0, 1, -1, -1], [1, 2, 7, 7]]),
                                                           label_format="indices"),
     "softmax_multilabel_forward: label index 7 appears twice in one sample, at labels[1, 3] (sample 1, slot 3); "
     "expected distinct class indices"),
    ("index-duplicate-class-zero", softmax_core(np.zeros((1, 4)), np.array([[0, 2, 0]]), label_format="indices"),
     "softmax_multilabel_forward: label index 0 appears twice in one sample, at labels[0, 2] (sample 0, slot 2); "
     "expected distinct class indices"),
    ("index-duplicate-spatial", softmax_core(np.zeros((2, 5, 3)),
                                             with_value(np.full((2, 2, 3), -1), (1, slice(None), 2), 4),
                                             label_format="indices"),
     "softmax_multilabel_forward: label index 4 appears twice in one sample, at labels[1, 1, 2] (sample 1 at (2), "
     "slot 1); expected distinct class indices"),
    ("shape-mismatch", softmax_core(scores(), np.zeros((4, 5, 2))),
     "softmax_multilabel_forward: labels shape (4, 5, 2) does not match scores shape (4, 5)"),
    ("one-label-per-sample-3d", softmax_core(np.zeros((8, 6, 5)), np.zeros((8, 5))),
     "softmax_multilabel_forward: labels shape (8, 5) does not match scores shape (8, 6, 5); the labels look like one "
     "class index per sample: for class indices use \"label_format\": \"indices\" with labels of shape N x K (K label "
     "slots per sample, padded with -1)"),
    ("one-label-per-sample-sigmoid", sigmoid_core(scores(), np.zeros(4)),
     "sigmoid_multilabel_forward: targets shape (4,) does not match scores shape (4, 5); the targets look like one "
     "class index per sample: this loss takes multi-hot targets shaped like the scores (convert with "
     "softmax_multilabel_layer.data.hdf5_labels.dense_from_indices)"),
    ("other-layer-option-param-str", lambda: SoftmaxOptions.from_param_str('{"gamma": 2, "alpha": 0.25}', "L"),
     "L: unknown param_str key(s) alpha, gamma; known keys: normalize_targets, normalization, axis, label_smoothing, "
     "label_format; alpha, gamma are an option of SigmoidMultilabelLossLayer (core function "
     "sigmoid_multilabel_forward), not of SoftmaxMultilabelLossLayer"),
    ("unknown-param-str-key", lambda: SoftmaxOptions.from_param_str('{"ax": 1, "bx": 2}', "L"),
     "L: unknown param_str key(s) ax, bx; known keys: normalize_targets, normalization, axis, label_smoothing, "
     "label_format"),
    ("param-str-not-json", lambda: SoftmaxOptions.from_param_str("{axis: 1}", "L"),
     "L: param_str is neither JSON nor a Python dict literal: '{axis: 1}'; expected e.g. "
     "'{\"normalization\": \"batch_size\"}'"),
    ("param-str-not-a-dict", lambda: SoftmaxOptions.from_param_str("[1]", "L"),
     "L: param_str must be a JSON object (a dict), got list [1]"),
    ("list-element", sigmoid_core(scores(), binary(), pos_weight=[1, -2, 1, 1, 1]),
     "sigmoid_multilabel_forward: pos_weight[1] must be in [0.0, inf], got -2"),
    ("list-element-class-weight", sigmoid_core(scores(), binary(), class_weight=[1, 1, float("nan"), 1, 1]),
     "sigmoid_multilabel_forward: class_weight[2] must be a finite number, got nan"),
    ("out-not-contiguous", stale_out(F.softmax_multilabel_backward, np.zeros((5, 4), np.float32).T),
     "softmax_multilabel_backward: out must be a writeable C-contiguous float32 array of shape (4, 5) (the scores' "
     "shape), got float32 array of shape (4, 5), not C-contiguous"),
    ("out-read-only", stale_out(F.softmax_probabilities, READ_ONLY),
     "softmax_probabilities: out must be a writeable C-contiguous float32 array of shape (4, 5) (the scores' shape), "
     "got float32 array of shape (4, 5), read-only"),
    ("out-read-only-and-not-contiguous", stale_out(F.softmax_multilabel_backward, READ_ONLY_T),
     "softmax_multilabel_backward: out must be a writeable C-contiguous float32 array of shape (4, 5) (the scores' "
     "shape), got float32 array of shape (4, 5), not C-contiguous, read-only"),
    ("stale-context", stale_context,
     "softmax_multilabel_backward: this context is stale: forward pass 2 on its Workspace has run since it was made "
     "(pass 1) and overwrote its buffers; call backward before the next forward, or give each forward its own "
     "Workspace"),
    ("label-sum-overflow-spatial", softmax_core(np.zeros((2, 3, 2, 2), np.float32),
                                                with_value(np.zeros((2, 3, 2, 2), np.float32), (1, slice(None), 1, 0),
                                                           2e38)),
     "softmax_multilabel_forward: the labels of sample (1, 1, 0) sum to inf, beyond the largest float32 "
     "(3.403e+38); expected labels whose sum per sample is finite in float32 (for example 0/1, or weights of "
     "moderate size)"),
    ("loss-beyond-float32", softmax_core(with_value(np.zeros((1, 100), np.float32), (0, 1), -1e3),
                                         with_value(np.zeros((1, 100), np.float32), (0, 1), 3e38),
                                         normalize_targets="none"),      # sparse labels: the sum is float64
     "softmax_multilabel_forward: the loss is not finite in float32 (3.0137853650734224e+41) although scores and "
     "labels are: the scores span more than the float32 range, or the labels are too large"),
    ("param-str-without-options-class", lambda: parse_param_str('{"gamma": 1}', "L", SoftmaxOptions.keys()),
     "L: unknown param_str key(s) gamma; known keys: normalize_targets, normalization, axis, label_smoothing, "
     "label_format"),
    ("axis-out-of-range", softmax_core(scores(), binary(), axis=2),
     "softmax_multilabel_forward: axis 2 is out of range for scores of shape (4, 5) (2 axes); expected -2 <= axis < 2"),
    ("indices-shape", softmax_core(scores(), np.zeros((3, 2)), label_format="indices"),
     "softmax_multilabel_forward: labels (indices format) shape (3, 2) does not fit scores shape (4, 5); expected the "
     "scores shape with the class axis 1 replaced by K label slots"),
    ("unknown-keywords", softmax_core(scores(), binary(), gama=1, bogus=2),
     "softmax_multilabel_forward: unknown option(s) bogus, gama; known options: normalize_targets, normalization, "
     "axis, label_smoothing, label_format"),
    ("options-and-keywords", softmax_core(scores(), binary(), options=SoftmaxOptions(), axis=1, bogus=2),
     "softmax_multilabel_forward: options= was given together with keyword option(s) axis, bogus; give either an "
     "options object or keywords, not both"),
    ("options-of-the-other-loss", sigmoid_core(scores(), binary(), options=SoftmaxOptions()),
     "sigmoid_multilabel_forward: options must be a SigmoidOptions, got SoftmaxOptions"),
    ("out-wrong-shape", stale_out(F.softmax_multilabel_backward, np.zeros((20,), np.float32)),
     "softmax_multilabel_backward: out must be a writeable C-contiguous float32 array of shape (4, 5) (the scores' "
     "shape), got float32 array of shape (20,)"),
]


@pytest.mark.parametrize("case", EXACT_MESSAGES, ids=[c[0] for c in EXACT_MESSAGES])
def test_exact_messages(case):
    _, call, expected = case
    with pytest.raises(MultilabelLossError) as info:
        call()
    assert str(info.value) == expected


OPTION_MESSAGES = [
    (SoftmaxOptions, {"normalize_targets": "l1"},
     'x: normalize_targets must be one of "count", "sum", "none", got \'l1\''),
    (SoftmaxOptions, {"normalization": "mean"},
     'x: normalization must be one of "batch_size", "valid", "full", "none", got \'mean\''),
    (SoftmaxOptions, {"axis": 1.5}, "x: axis must be an integer, got 1.5"),
    (SoftmaxOptions, {"label_smoothing": 1}, "x: label_smoothing must be in [0.0, 1.0), got 1"),
    (SoftmaxOptions, {"label_format": "sparse"}, 'x: label_format must be one of "dense", "indices", got \'sparse\''),
    (SigmoidOptions, {"pos_weight": -2}, "x: pos_weight must be in [0.0, inf], got -2"),
    (SigmoidOptions, {"pos_weight": "2"}, "x: pos_weight must be a finite number, got '2'"),
    (SigmoidOptions, {"class_weight": 2}, "x: class_weight must be a non-empty list of numbers, got 2"),
    (SigmoidOptions, {"gamma": -1}, "x: gamma must be in [0.0, inf], got -1"),
    (SigmoidOptions, {"alpha": 2}, "x: alpha (-1 = off) must be in [0.0, 1.0], got 2"),
    (SigmoidOptions, {"ignore_label": float("nan")}, "x: ignore_label must be a finite number, got nan"),
    (SigmoidOptions, {"normalization": "mean"},
     'x: normalization must be one of "batch_size", "valid", "full", "none", got \'mean\''),
    (SigmoidOptions, {"axis": True}, "x: axis must be an integer, got True"),
]


@pytest.mark.parametrize("cls,kwargs,expected", OPTION_MESSAGES)
def test_option_messages_exact(cls, kwargs, expected):
    with pytest.raises(MultilabelLossError) as info:
        cls(owner="x", **kwargs)
    assert str(info.value) == expected


def test_options_are_normalized_to_floats_and_tuples():
    """The parser hands the core floats and tuples, whatever JSON gave (ints, lists), and -1.0 for alpha off."""
    s = SigmoidOptions(owner="x", pos_weight=2, gamma=1, alpha=0, ignore_label=255, class_weight=[1, 2])
    assert (s.pos_weight, s.gamma, s.alpha, s.ignore_label, s.class_weight) == (2.0, 1.0, 0.0, 255.0, (1.0, 2.0))
    assert [type(v) for v in (s.pos_weight, s.gamma, s.alpha, s.ignore_label)] == [float] * 4
    assert SigmoidOptions(owner="x", pos_weight=[1, 3]).pos_weight == (1.0, 3.0)
    for off in (SigmoidOptions(owner="x"), SigmoidOptions(owner="x", alpha=-1)):
        assert off.alpha == -1.0 and type(off.alpha) is float
    assert type(SoftmaxOptions(owner="x", label_smoothing=0).label_smoothing) is float


def test_workspace_reuses_a_buffer_only_for_the_same_name_shape_and_dtype():
    ws = F.Workspace()
    a = ws.get("a", (2, 3), np.float32)
    assert ws.get("a", (2, 3), np.float32) is a
    for other in (ws.get("b", (2, 3), np.float32), ws.get("a", (3, 2), np.float32), ws.get("a", (3, 2), np.float64)):
        assert other is not a
    assert ws.get("a", (3, 2), np.float64).shape == (3, 2) and ws.get("a", (3, 2), np.float64).dtype == np.float64
    # one workspace through changing shapes and dtypes gives what fresh workspaces give
    rng = np.random.default_rng(12)
    for shape, dtype in [((4, 5), np.float32), ((3, 7), np.float32), ((3, 7), np.float64), ((4, 5), np.float32)]:
        s, y = rng.normal(size=shape).astype(dtype), (rng.random(shape) < 0.5).astype(dtype)
        loss, ctx = F.softmax_multilabel_forward(s, y, workspace=ws)
        fresh = F.softmax_multilabel_loss(s, y)
        assert loss == fresh[0] and np.array_equal(F.softmax_multilabel_backward(ctx), fresh[1])


def test_one_dimensional_scores_and_every_negative_axis():
    """A 1-D blob is one sample; axis -ndim is axis 0."""
    s, y = np.array([1.0, 3.0, -2.0]), np.array([0.0, 1.0, 1.0])
    loss, grad = F.softmax_multilabel_loss(s, y, axis=0)
    assert loss == pytest.approx(F.softmax_multilabel_loss(s[None], y[None])[0], rel=1e-15)
    s2, y2 = np.stack([s, s + 1]), np.stack([y, y[::-1]])
    got = F.softmax_multilabel_loss(s2, y2, axis=-2, normalization="none")
    expected = F.softmax_multilabel_loss(s2.T, y2.T, normalization="none")
    assert got[0] == pytest.approx(expected[0], rel=1e-15)
    np.testing.assert_allclose(got[1], expected[1].T, rtol=1e-15)
