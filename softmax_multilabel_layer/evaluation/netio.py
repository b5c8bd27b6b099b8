"""Caffe net I/O: read prototxts, load and check weights, phases, the loss's activation, class names,
image preprocessing as the TEST phase does it, and one pass of a net over a data set."""
import os
import re
import sys
from typing import Any, TextIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.params import (
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    TwoWayOptions,
    ZLPROptions,
    parse_param_str,
)
from softmax_multilabel_layer.tools.netfiles import check_files, in_phase, list_samples

DATA_TYPES = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "Input",
              "AnnotatedData", "VideoData")
# The output each loss implies, as a Caffe layer type. ZLPR: the sigmoid of the score, so its threshold s > 0 is
# p > 0.5 (rule "zlpr"). The two-way loss gives ranking scores with no threshold or probability meaning: "Power"
# with its defaults (power 1, scale 1, shift 0) is the identity, so its output is the scores themselves.
OUR_LOSSES = {"SoftmaxMultilabelLossLayer": "Softmax", "SigmoidMultilabelLossLayer": "Sigmoid",
              "ZLPRLossLayer": "Sigmoid", "TwoWayLossLayer": "Power"}
LOSS_OPTIONS: dict[str, type[SoftmaxOptions] | type[SigmoidOptions] | type[ZLPROptions] | type[TwoWayOptions]] = {
    "SoftmaxMultilabelLossLayer": SoftmaxOptions, "SigmoidMultilabelLossLayer": SigmoidOptions,
    "ZLPRLossLayer": ZLPROptions, "TwoWayLossLayer": TwoWayOptions}


CAFFE_LOSSES = {"SoftmaxWithLoss": "Softmax", "SigmoidCrossEntropyLoss": "Sigmoid"}


def loss_probability(layer: Any) -> tuple[str | None, int | None]:
    """For a loss layer, ``(kind, axis)``: kind "Softmax" or "Sigmoid" (the probabilities its loss implies; "Power",
    the identity, for the two-way loss's ranking scores),
    or ``(None, None)`` for another layer. ``axis`` is the class axis (1 unless the options move it)."""
    if layer.type in CAFFE_LOSSES:
        axis = layer.softmax_param.axis if layer.HasField("softmax_param") else 1
        return CAFFE_LOSSES[layer.type], axis
    if layer.type == "Python" and layer.python_param.layer in OUR_LOSSES \
            and layer.python_param.module.startswith("softmax_multilabel_layer"):
        params = param_dict(layer)
        return OUR_LOSSES[layer.python_param.layer], params.get("axis", 1)
    return None, None


def param_dict(layer: Any) -> dict[str, Any]:
    options = LOSS_OPTIONS.get(layer.python_param.layer, SigmoidOptions)
    return parse_param_str(layer.python_param.param_str, layer.name, sorted(options.keys()))


def is_data_layer(layer: Any) -> bool:
    return layer.type in DATA_TYPES or (layer.type == "Python" and not layer.bottom)


def read_net(path: str) -> Any:
    """A NetParameter from a prototxt file; a one-line error naming the file and line when it does not parse."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise MultilabelLossError("cannot read %s (%s)" % (path, exc.strerror)) from None
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, net)
    except text_format.ParseError as exc:
        raise MultilabelLossError("%s does not parse as a NetParameter: %s" % (path, exc)) from None
    return net


def import_caffe() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()
    return caffe


def blob_dims(blob: Any) -> tuple[int, ...]:
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def check_weights(net: Any, weights: str) -> None:
    """A one-line error unless every learnable layer of ``net`` is in the .caffemodel with the same shapes
    (Caffe itself aborts the process on a mismatch)."""
    if not os.path.isfile(weights):
        raise MultilabelLossError("weights file %s does not exist" % weights)
    if weights.endswith((".h5", ".hdf5")):
        return                                      # HDF5 weights: left to Caffe
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    model = caffe_pb2.NetParameter()
    try:
        with open(weights, "rb") as f:
            model.ParseFromString(f.read())
    except DecodeError:
        raise MultilabelLossError("weights file %s is not a .caffemodel (NetParameter binary proto)"
                                  % weights) from None
    saved = {layer.name: [blob_dims(b) for b in layer.blobs] for layer in list(model.layer) + list(model.layers)}
    for name, params in net.params.items():
        if name not in saved or not saved[name]:
            raise MultilabelLossError("weights %s do not fit the net: no weights for layer %r (layers with weights "
                                      "in the file: %s)" % (weights, name, ", ".join(k for k, v in saved.items() if v)))
        if len(saved[name]) != len(params):
            raise MultilabelLossError("weights %s do not fit the net: layer %r has %d weight blobs in the net and %d "
                                      "in the file" % (weights, name, len(params), len(saved[name])))
        for i, (param, dims) in enumerate(zip(params, saved[name], strict=True)):
            shape = tuple(param.data.shape)
            legacy = (1,) * (4 - len(shape)) + shape if len(dims) == 4 and len(shape) <= 4 else shape
            if dims != shape and dims != legacy:
                raise MultilabelLossError("weights %s do not fit the net: layer %r param %d has shape %s in the file, "
                                          "%s in the net" % (weights, name, i, dims, shape))


def check_iters(net: Any, iters: int, net_path: str) -> None:
    """An error when ``iters`` TEST batches read past the end of a list-backed source (they would wrap around
    and count samples twice), saying how many batches fit."""
    from caffe.proto import caffe_pb2
    for layer in net.layer:
        if not in_phase(layer, caffe_pb2.TEST) or not is_data_layer(layer):
            continue
        found = list_samples(layer)
        if found is None:
            continue
        source, samples, batch = found
        if iters * batch > samples:
            raise MultilabelLossError(
                "--iters %d x batch_size %d = %d samples, but TEST data layer %r of %s reads %d from %s: the "
                "batches would wrap past the end and count samples twice; at most %d batches fit (%d samples)"
                % (iters, batch, iters * batch, layer.name, net_path, samples, source, samples // batch,
                   samples // batch * batch))


def load_net(model: str, weights: str | None, phase: str = "test") -> Any:
    """``caffe.Net(model, weights, phase)`` with the prototxt, the weights and the data files checked first
    (one-line errors; Caffe aborts the process on a missing file)."""
    net_param = read_net(model)
    if weights and not os.path.isfile(weights):
        raise MultilabelLossError("weights file %s does not exist" % weights)
    check_files(net_param, phase, model)
    caffe = import_caffe()
    net = caffe.Net(model, caffe.TEST if phase == "test" else caffe.TRAIN)
    if weights:
        check_weights(net, weights)
        net.copy_from(weights)
    return net


def find_loss(net_param: Any) -> tuple[Any, str | None]:
    """The TEST-phase loss layer whose probabilities we evaluate: (layer, "Softmax" or "Sigmoid")."""
    from caffe.proto import caffe_pb2

    for layer in net_param.layer:
        kind, axis = loss_probability(layer)
        if kind is not None and in_phase(layer, caffe_pb2.TEST):
            if axis != 1:
                raise MultilabelLossError("loss layer %r uses axis %s; only axis 1 (N x C scores) is supported"
                                          % (layer.name, axis))
            return layer, kind
    return None, None


def label_format(layer: Any) -> str:
    """"indices" for SoftmaxWithLoss labels and our softmax loss with label_format "indices", else "dense"."""
    if layer is None:
        return "dense"
    if layer.type == "SoftmaxWithLoss":
        return "indices"
    if layer.type == "Python" and layer.python_param.param_str:
        return param_dict(layer).get("label_format", "dense")
    return "dense"


def probabilities(scores: ArrayLike, kind: str | None) -> NDArray[np.floating[Any]]:
    """float64 softmax over classes, sigmoid, or the scores themselves (kind None, or "Power": the identity;
    float32 or float64 kept as they are, without a copy; the metrics compare them exactly in their own precision)."""
    s = np.asarray(scores)
    if kind in (None, "Power") and s.dtype in (np.float32, np.float64):
        return s
    s = s.astype(np.float64)
    if kind == "Softmax":
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == "Sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * s))
    return s


def progress(label: str, i: int, total: int, stream: TextIO | None = None) -> None:
    """A one-line progress bar on stderr (rewritten in place)."""
    stream = stream or sys.stderr
    width = 30
    done = int(width * i / max(total, 1))
    stream.write("\r%s [%s%s] %d/%d" % (label, "#" * done, "." * (width - done), i, total))
    if i == total:
        stream.write("\n")
    stream.flush()


def collect(net_path: str, weights: str | None, iters: int | None, scores_blob: str | None = None,
            labels_blob: str | None = None, activation: str | None = "auto",
            label: str = "forward") -> tuple[NDArray[np.float64], NDArray[np.bool_], dict[str, Any]]:
    """Run the TEST phase ``iters`` times; returns (probabilities N x C float64, labels N x C bool, info)."""
    if iters is None or iters < 1:
        raise MultilabelLossError("--iters must be >= 1 with --net (batches to run)")
    net_param = read_net(net_path)
    loss, kind = find_loss(net_param)
    if loss is None and (scores_blob is None or labels_blob is None):
        raise MultilabelLossError("%s has no multi-label loss layer in the TEST phase; give --scores-blob and "
                                  "--labels-blob" % net_path)
    scores_blob = scores_blob or loss.bottom[0]
    labels_blob = labels_blob or loss.bottom[1]
    if activation == "auto":
        activation = kind if loss is not None and scores_blob == loss.bottom[0] else None
    fmt = label_format(loss) if loss is not None and labels_blob == loss.bottom[1] else "dense"
    if weights and not os.path.isfile(weights):
        raise MultilabelLossError("weights file %s does not exist" % weights)
    check_files(net_param, "test", net_path)
    check_iters(net_param, iters, net_path)
    net = load_net(net_path, weights)
    for option, blob in (("--scores-blob", scores_blob), ("--labels-blob", labels_blob)):
        if blob not in net.blobs:
            raise MultilabelLossError("%s %s: no such blob in the TEST net; blobs: %s"
                                      % (option, blob, ", ".join(net.blobs)))
    scores, labels = [], []
    for i in range(iters):
        net.forward()
        s = net.blobs[scores_blob].data
        if s.ndim > 2 and np.prod(s.shape[2:]) != 1:
            raise MultilabelLossError("scores blob %s has shape %s; expected N x C (or N x C x 1 x 1)"
                                      % (scores_blob, s.shape))
        scores.append(s.reshape(len(s), -1).copy())
        labels.append(net.blobs[labels_blob].data.reshape(len(s), -1).copy())
        progress(label, i + 1, iters)
    scores, raw = np.concatenate(scores), np.concatenate(labels)
    if fmt == "indices":
        y = M.indices_to_multi_hot(raw, scores.shape[1], owner="labels blob %s" % labels_blob)
    else:
        if raw.shape != scores.shape:
            raise MultilabelLossError("labels blob %s is %s but scores blob %s is %s over the %d batches; expected "
                                      "the same N x C (dense multi-hot) or a loss with label_format \"indices\""
                                      % (labels_blob, raw.shape, scores_blob, scores.shape, iters))
        y = M.check_labels("labels blob %s" % labels_blob, raw)
    M.check_scores("scores blob %s" % scores_blob, scores)
    info = {"net": net_path, "weights": weights, "iters": iters, "scores_blob": scores_blob,
            "labels_blob": labels_blob, "activation": activation or "none", "label_format": fmt}
    return probabilities(scores, activation), y, info


def snapshot_iteration(path: str) -> int:
    m = re.search(r"_iter_(\d+)\.caffemodel$", path)
    return int(m.group(1)) if m else -1


def preprocess_image(path: str, shape: tuple[int, int, int], resize: tuple[int, int] | None = None,
                     mean: ArrayLike | None = None, scale: float = 1.0, bgr: bool = True) -> NDArray[np.float32]:
    """One image file -> a C x H x W float32 array, exactly as the data layers prepare it in TEST.

    Decoding and resizing are :func:`.image_data.load_image` (OpenCV, as Caffe's ``ImageData``), the
    arithmetic is :class:`.image_data.Transform` (Caffe's ``DataTransformer``), so a net trained with
    ``MultilabelImageDataLayer`` or ``ImageData`` sees the same values at prediction time.

    Args:
        path: image file (any format OpenCV reads).
        shape: (C, H, W) of the net input; C = 1 reads grey, C = 3 colour.
        resize: (H, W) to resize to first (default: (H, W) of ``shape``); then a centre crop to (H, W).
        mean: per-channel values (in the output channel order) subtracted after the channel swap.
        scale: multiplies the result: ``(x - mean) * scale``, as Caffe's ``transform_param``.
        bgr: colour channels in BGR order (Caffe's convention); False gives RGB.

    Values are 0-255 before mean and scale.
    """
    from softmax_multilabel_layer.evaluation.model import prepare_image
    channels, height, width = shape
    size = tuple(resize) if resize else (height, width)
    spec = {"shape": [channels, height, width], "resize": list(size), "crop": size != (height, width),
            "mean_value": None if mean is None else list(np.atleast_1d(np.asarray(mean, np.float64))),
            "scale": scale, "channel_order": "BGR" if bgr else "RGB"}
    return prepare_image(path, spec)


def class_names(path: str | None, num_classes: int | None = None) -> list[str] | None:
    if not path:
        return None
    try:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise MultilabelLossError("class names file %s: %s" % (path, exc.strerror)) from None
    if num_classes is not None and len(names) != num_classes:
        raise MultilabelLossError("class names file %s has %d names but the scores have C=%d classes"
                                  % (path, len(names), num_classes))
    return names


__all__ = ["check_files", "check_iters", "check_weights", "class_names", "collect", "find_loss", "in_phase",
           "is_data_layer", "label_format", "list_samples", "load_net", "loss_probability", "param_dict",
           "preprocess_image", "probabilities", "read_net", "snapshot_iteration"]
