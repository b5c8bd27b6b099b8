"""Deploy nets from a train_val prototxt: ``softmax-multilabel deploy train_val.prototxt [--input-shape N,C,H,W]``.

The TEST-phase layers are kept, except:

- data layers (``Data``, ``ImageData``, ``HDF5Data``, ``Input``, ... and any ``Python`` layer with no bottom,
  such as this package's data layers) are replaced by one ``Input`` layer per blob the rest of the net reads;
- loss layers (any type ending in ``Loss``, this package's Python losses, any layer with a non-zero
  ``loss_weight``), ``Accuracy`` layers, and layers the probabilities do not depend on are removed;
- our ``SoftmaxMultilabelLossLayer`` and Caffe's ``SoftmaxWithLoss`` become the C++ ``Softmax`` layer, our
  ``SigmoidMultilabelLossLayer`` and ``SigmoidCrossEntropyLoss`` the C++ ``Sigmoid`` layer, with top ``prob``
  (``prob_<loss name>`` for a second loss). The deploy net needs no Python layer and no install of this package.

Parameters (``lr_mult``, fillers) stay, so ``caffe.Net(deploy, weights, caffe.TEST)`` loads a snapshot as is.

With ``--weights W.caffemodel --out MODEL/`` it writes a model folder (:mod:`.model`): the deploy net, the
weights, and model.json, which says how the TEST phase fed the net (read from our image data layer, Caffe's
``ImageData``, or a ``Data`` layer's ``transform_param``; the ``--input-*`` options describe any other input),
the activation, the class names, the decision rule and where the model came from.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from softmax_multilabel_layer.evaluation.model import FORMAT_VERSION, MODEL_FORMAT, is_model_folder, write_spec
from softmax_multilabel_layer.evaluation.netio import (
    check_weights,
    in_phase,
    is_data_layer,
    loss_probability,
    read_net,
    snapshot_iteration,
)
from softmax_multilabel_layer.params import IMAGE_DATA_OWNER, ImageDataOptions, MultilabelLossError

GLOG_PREFIX = r"^[FEWI]\d{8} [\d:.]+ +\d+ \S+\] "


def is_removed(layer: Any) -> bool:
    return is_data_layer(layer) or layer.type.endswith("Loss") or layer.type == "Accuracy" \
        or loss_probability(layer)[0] is not None or any(w != 0 for w in layer.loss_weight)


def _needed(layers: list[Any], outputs: list[str]) -> list[Any]:
    """The layers the blobs ``outputs`` depend on (e.g. not a Reshape of the labels that only fed a loss)."""
    needed, keep = set(outputs), []
    for layer in reversed(layers):
        if needed & set(layer.top):
            keep.append(layer)
            needed.update(layer.bottom)
    return keep[::-1]


def parse_input_shapes(values: Sequence[str] | None) -> dict[str | None, tuple[int, ...]]:
    """``["1,3,224,224"]`` or ``["data=1,3,224,224", "im_info=1,3"]`` -> {name or None: (dims)}."""
    shapes = {}
    for text in values or ():
        name, sep, dims = text.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise MultilabelLossError("--input-shape %r: expected positive integers N,C,H,W (optionally BLOB=...)"
                                      % text)
        shapes[name if sep else None] = shape
    return shapes


def _inputs(layers: list[Any]) -> list[str]:
    """Blobs read by ``layers`` before any of them writes them, in order of first use."""
    produced, inputs = set(), []
    for layer in layers:
        for b in layer.bottom:
            if b not in produced and b not in inputs:
                inputs.append(b)
        produced.update(layer.top)
    return inputs


def _infer_shapes(path: str, net: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` from the train net itself: an Input layer's shape, else the TEST net built by pycaffe."""
    shapes = {}
    for layer in net.layer:
        if layer.type == "Input":
            for i, top in enumerate(layer.top):
                dims = layer.input_param.shape[min(i, len(layer.input_param.shape) - 1)].dim
                shapes[top] = tuple(dims)
    missing = [n for n in names if n not in shapes]
    if missing:      # build the TEST net in a child process: Caffe aborts the process when, say, a data file is missing
        script = ("import json, sys, caffe; net = caffe.Net(sys.argv[1], caffe.TEST); "
                  "print(json.dumps({n: list(net.blobs[n].data.shape) for n in sys.argv[2:]}))")
        env = dict(os.environ, GLOG_minloglevel="2")
        done = subprocess.run([sys.executable, "-c", script, path] + missing, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])
            why = [line for line in why if not line.startswith("***")][-1:] or why[-1:]
            raise MultilabelLossError("cannot infer the shape of input %s: building the TEST net of %s failed (%s); "
                                      "pass --input-shape N,C,H,W" % (", ".join(missing), path,
                                                                      re.sub(GLOG_PREFIX, "", why[0].strip())))
        shapes.update({n: tuple(v) for n, v in json.loads(done.stdout.strip().splitlines()[-1]).items()})
    return shapes


def deploy_net(path: str, input_shapes: dict[str | None, tuple[int, ...]] | None = None) -> Any:
    """The deploy NetParameter of the train_val prototxt at ``path`` (see the module docstring).

    Args:
        path: train_val prototxt.
        input_shapes: {blob: shape} or {None: shape} for the only input (see :func:`parse_input_shapes`);
            missing shapes come from the net's own Input layers or from building its TEST net.
    """
    from caffe.proto import caffe_pb2
    net = read_net(path)
    if net.input or net.input_shape:
        raise MultilabelLossError("%s uses the legacy input:/input_shape fields; it already is a deploy net"
                                  % path)
    phase = caffe_pb2.TEST
    layers = [layer for layer in net.layer if in_phase(layer, phase)]
    kept: list[Any] = []
    probs: list[Any] = []
    for layer in layers:
        kind, axis = loss_probability(layer)
        if kind is not None:
            top = "prob" if not probs else "prob_%s" % layer.name
            prob = caffe_pb2.LayerParameter(name=top, type=kind, bottom=[layer.bottom[0]], top=[top])
            if kind == "Softmax" and axis != 1:
                prob.softmax_param.axis = axis
            probs.append(prob)
        elif not is_removed(layer):
            kept.append(layer)
    if not probs:
        raise MultilabelLossError("%s has no SoftmaxMultilabelLossLayer, SigmoidMultilabelLossLayer, "
                                  "SoftmaxWithLoss or SigmoidCrossEntropyLoss layer in the TEST phase" % path)
    body = _needed(kept, [p.bottom[0] for p in probs]) + probs
    names = _inputs(body)
    shapes = dict(input_shapes or {})
    if None in shapes:
        if len(names) != 1:
            raise MultilabelLossError("the net reads %d inputs (%s); give --input-shape BLOB=N,C,H,W for each"
                                      % (len(names), ", ".join(names)))
        shapes[names[0]] = shapes.pop(None)
    unknown = sorted(str(n) for n in set(shapes) - set(names))
    if unknown:
        raise MultilabelLossError("--input-shape names %s, but the deploy net's inputs are %s"
                                  % (", ".join(unknown), ", ".join(names)))
    missing = [n for n in names if n not in shapes]
    if missing:
        shapes.update(_infer_shapes(path, net, missing))
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for n in names:
        layer = out.layer.add(name=n, type="Input", top=[n])
        layer.input_param.shape.add(dim=shapes[n])
    for layer in body:
        new = out.layer.add()
        new.CopyFrom(layer)
        for field in ("include", "exclude"):
            rules = [r for r in getattr(new, field) if not (r.HasField("phase") and len(r.ListFields()) == 1)]
            del getattr(new, field)[:]
            getattr(new, field).extend(rules)
    return out


def deploy_prototxt(path: str, input_shapes: dict[str | None, tuple[int, ...]] | None = None,
                    command_line: str | None = None, net: Any = None) -> str:
    """The deploy net as prototxt text, headed by a comment naming the command that generates it.

    ``net``: the deploy NetParameter when already built by :func:`deploy_net` (else it is built from ``path``).
    """
    from google.protobuf import text_format
    net = net if net is not None else deploy_net(path, input_shapes)
    probs = [layer for layer in net.layer if layer.name.startswith("prob")]
    header = ["# Generated by: %s" % (command_line or "softmax-multilabel deploy %s" % path),
              "# Data, loss and accuracy layers removed; %s (C++ layers, no Python layer needed)."
              % ", ".join('"%s" = %s(%s)' % (p.name, p.type, p.bottom[0]) for p in probs)]
    text = text_format.MessageToString(net)
    return "\n".join(header) + "\n" + text


# ---------------------------------------------------------------------------------------------------------------
# the model folder

INPUT_OPTIONS = "--input-resize H,W, --input-crop S, --input-mean V[,V,V], --input-mean-file F, --input-scale S, " \
                "--input-order bgr|rgb"


def _input_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --input-* options given, as model.json input fields."""
    out: dict[str, Any] = {}
    if getattr(args, "input_resize", None):
        dims = parse_input_shapes([args.input_resize])[None]
        if len(dims) != 2:
            raise MultilabelLossError("--input-resize %r: expected H,W" % args.input_resize)
        out["resize"] = list(dims)
    if getattr(args, "input_crop", None) is not None:
        if args.input_crop < 0:
            raise MultilabelLossError("--input-crop %d: expected a size >= 0" % args.input_crop)
        out["crop"] = args.input_crop
    if getattr(args, "input_mean", None):
        try:
            out["mean_value"] = [float(v) for v in args.input_mean.split(",")]
        except ValueError:
            raise MultilabelLossError("--input-mean %r: expected numbers V or V,V,V" % args.input_mean) from None
    if getattr(args, "input_mean_file", None):
        out["mean_file"] = args.input_mean_file
    if getattr(args, "input_scale", None) is not None:
        out["scale"] = args.input_scale
    if getattr(args, "input_order", None):
        out["channel_order"] = args.input_order.upper()
    return out


def _transform(layer: Any, what: str) -> dict[str, Any]:
    """Resize-free fields of a Caffe transform_param: crop, mean values or mean file, scale."""
    t = layer.transform_param
    for field in ("crop_h", "crop_w", "force_color", "force_gray", "old_resize_param", "noise_param"):
        if t.HasField(field) and (not isinstance(getattr(t, field), (int, bool)) or getattr(t, field)):
            raise MultilabelLossError("%s: transform_param.%s is not described by a model folder; give %s"
                                      % (what, field, INPUT_OPTIONS))
    return {"crop": int(t.crop_size), "mean_value": list(t.mean_value) or None,
            "mean_file": t.mean_file or None, "scale": float(t.scale)}


def _lmdb_datum_size(source: str) -> tuple[int, int] | None:
    """(height, width) of the first datum of an LMDB, or None when it cannot be read."""
    try:
        import lmdb
        from caffe.proto import caffe_pb2
        with lmdb.open(source, readonly=True, lock=False) as env, env.begin() as txn:
            first = next(iter(txn.cursor()), None)
        if first is None:
            return None
        datum = caffe_pb2.Datum()
        datum.ParseFromString(first[1])
        if datum.encoded:
            return None
        return int(datum.height), int(datum.width)
    except Exception:          # no lmdb module, not an LMDB, not a Datum: the user says it with --input-resize
        return None


def describe_input(net: Any, blob: str, shape: Sequence[int], path: str,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model.json ``input`` of the deploy input ``blob`` (shape N,C,H,W): how the TEST phase of the train
    net ``net`` (a NetParameter read from ``path``) fed it, overridden by the --input-* options.

    Read from our ``MultilabelImageDataLayer``, Caffe's ``ImageData``, or a ``Data`` layer's ``transform_param``;
    another layer (HDF5Data, Input, a Python layer of the user's own) needs the --input-* options: an error says
    so, never a guess.
    """
    from caffe.proto import caffe_pb2
    overrides = dict(overrides or {})
    if len(shape) != 4:
        if overrides:
            raise MultilabelLossError("the deploy input %s has shape %s, not images (N,C,H,W): the --input-* "
                                      "options do not apply" % (blob, tuple(shape)))
        return {"blob": blob, "kind": "array", "shape": list(shape[1:]), "from": "the net's input (not images)"}
    channels, height, width = (int(d) for d in shape[1:])
    layer = next((la for la in net.layer if in_phase(la, caffe_pb2.TEST) and blob in la.top and is_data_layer(la)),
                 None)
    what = "TEST data layer %r (%s) of %s" % (layer.name, layer.type, path) if layer is not None else \
        "input %s of %s" % (blob, path)
    desc: dict[str, Any] | None = None
    if layer is not None and layer.type == "Python" and layer.python_param.layer == IMAGE_DATA_OWNER \
            and layer.python_param.module.startswith("softmax_multilabel_layer"):
        o = ImageDataOptions.from_param_str(layer.python_param.param_str, layer.name)
        desc = {"resize": [o.new_height, o.new_width] if o.new_height else None, "crop": o.crop_size,
                "mean_value": None if o.mean_value is None else [float(v) for v in np.atleast_1d(o.mean_value)],
                "mean_file": None,
                "scale": float(o.scale), "class_names_file": o.class_names,
                "from": "%s (MultilabelImageDataLayer) of %s" % (layer.name, path)}
        if (3 if o.is_color else 1) != channels:
            raise MultilabelLossError("%s: is_color %s but the net input has %d channels"
                                      % (what, str(o.is_color).lower(), channels))
    elif layer is not None and layer.type == "ImageData":
        p = layer.image_data_param
        desc = dict(_transform(layer, what), resize=[p.new_height, p.new_width] if p.new_height else None,
                    **{"from": "%s (ImageData) of %s" % (layer.name, path)})
        if p.mean_file and not desc["mean_file"]:
            desc["mean_file"] = p.mean_file
        if p.crop_size and not desc["crop"]:
            desc["crop"] = int(p.crop_size)
        if p.scale != 1 and desc["scale"] == 1:
            desc["scale"] = float(p.scale)
    elif layer is not None and layer.type == "Data":
        desc = dict(_transform(layer, what), resize=None, **{"from": "%s (Data) of %s" % (layer.name, path)})
        if not desc["crop"]:
            desc["resize"] = [height, width]
        elif "resize" not in overrides:
            size = _lmdb_datum_size(layer.data_param.source) if layer.data_param.backend == 1 else None
            if size is None:
                raise MultilabelLossError("%s crops %d from images whose size its LMDB %s does not tell; give "
                                          "--input-resize H,W (the size the images were stored at)"
                                          % (what, desc["crop"], layer.data_param.source))
            desc["resize"] = list(size)
    if desc is None:
        if not overrides:
            raise MultilabelLossError("cannot describe the input of %s: %s; give the preprocessing the net was "
                                      "trained with: %s (any not given: none)"
                                      % (path, "TEST %s layer %r is not an image data layer this command reads"
                                         % (layer.type, layer.name) if layer is not None
                                         else "no TEST data layer writes blob %s" % blob, INPUT_OPTIONS))
        desc = {"resize": None, "crop": 0, "mean_value": None, "mean_file": None, "scale": 1.0,
                "from": "the --input-* options"}
    elif overrides:
        desc["from"] += ", with the --input-* options"
    desc.update(overrides)
    if desc.get("mean_value") is not None and len(desc["mean_value"]) not in (1, channels):
        raise MultilabelLossError("%s: %d mean values for %d channels" % (what, len(desc["mean_value"]), channels))
    crop = int(desc.get("crop") or 0)
    if crop and (crop, crop) != (height, width):
        raise MultilabelLossError("%s: crop %d but the net input is %dx%d" % (what, crop, height, width))
    return {"blob": blob, "kind": "image", "shape": [channels, height, width], "color": channels == 3,
            "channel_order": desc.pop("channel_order", "BGR"), "resize": desc["resize"], "crop": crop,
            "mean_value": desc["mean_value"], "mean_file": desc["mean_file"], "scale": desc["scale"],
            "class_names_file": desc.get("class_names_file"), "from": desc["from"]}


def _mean_image(path: str) -> Any:
    """A mean file (.binaryproto BlobProto, or .npy) as a C x H x W float32 array."""
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    from caffe.proto import caffe_pb2
    blob = caffe_pb2.BlobProto()
    try:
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
    except (OSError, ValueError) as exc:
        raise MultilabelLossError("mean file %s: %s" % (path, exc)) from None
    dims = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)
    data = np.array(blob.data, dtype=np.float32)
    if data.size != int(np.prod(dims)) or data.size == 0:
        raise MultilabelLossError("mean file %s: %d values for shape %s" % (path, data.size, dims))
    return data.reshape(dims[-3:])


def _versions() -> dict[str, str]:
    from softmax_multilabel_layer import __version__
    from softmax_multilabel_layer.evaluation.netio import import_caffe
    return {"softmax_multilabel_layer": __version__,
            "caffe": str(getattr(import_caffe(), "__version__", "unknown"))}


def _opencv_check(deploy: str, weights: str, blob: str, shape: Sequence[int], output: str) -> str | None:
    """None when OpenCV's DNN reads the deploy net and runs it (on zeros), else its error, which names the layer
    it cannot create (OpenCV creates the layers at the first forward)."""
    try:
        import cv2
    except ImportError as exc:
        return "cv2 not importable (%s)" % exc
    try:
        net = cv2.dnn.readNetFromCaffe(deploy, weights)
        net.setInput(np.zeros(tuple(shape), np.float32), blob)
        net.forward(output)
    except cv2.error as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return re.sub(r"^OpenCV\([\d.]+\) \S+: ", "", lines[-1]) if lines else "cv2.error"
    return None


def write_model_folder(net_path: str, weights: str, out: str,
                       input_shapes: dict[str | None, tuple[int, ...]] | None = None,
                       input_overrides: dict[str, Any] | None = None, class_names_file: str | None = None,
                       rule: str | None = None, command_line: str | None = None,
                       warn: Any = None) -> dict[str, Any]:
    """Write the model folder ``out`` (deploy.prototxt, weights.caffemodel, model.json, mean.npy); returns the
    model.json content. The folder is written under a temporary name and renamed when complete; an existing
    ``out`` is replaced only when it is a model folder this command wrote (or an empty folder).
    """
    from softmax_multilabel_layer.data.image_data import read_class_names
    from softmax_multilabel_layer.evaluation.netio import import_caffe
    from softmax_multilabel_layer.evaluation.rules import parse_rule
    warn = warn or (lambda text: sys.stderr.write("softmax-multilabel deploy: warning: %s\n" % text))
    out = os.path.normpath(out)
    if os.path.exists(out) and not (os.path.isdir(out) and (is_model_folder(out) or not os.listdir(out))):
        raise MultilabelLossError("--out %s exists and is not a model folder written by deploy; not overwritten "
                                  "(choose another folder or remove it)" % out)
    if not os.path.isfile(weights):
        raise MultilabelLossError("weights file %s does not exist" % weights)
    if class_names_file and not os.path.isfile(class_names_file):
        raise MultilabelLossError("--class-names %s does not exist" % class_names_file)
    if rule is not None:
        parse_rule(rule)
    net = read_net(net_path)
    deploy = deploy_net(net_path, input_shapes)
    inputs = [layer for layer in deploy.layer if layer.type == "Input"]
    probs = [layer for layer in deploy.layer if layer.name.startswith("prob")]
    if len(inputs) != 1:
        raise MultilabelLossError("the deploy net of %s reads %d inputs (%s); a model folder takes one"
                                  % (net_path, len(inputs), ", ".join(la.top[0] for la in inputs)))
    blob, shape = inputs[0].top[0], tuple(inputs[0].input_param.shape[0].dim)
    spec_input = describe_input(net, blob, shape, net_path, input_overrides)
    mean_src = spec_input.get("mean_file")
    if mean_src and not os.path.isfile(mean_src):
        raise MultilabelLossError("mean file %s does not exist" % mean_src)
    names_file = class_names_file or spec_input.pop("class_names_file", None)
    spec_input.pop("class_names_file", None)
    if names_file and not os.path.isfile(names_file):
        raise MultilabelLossError("class names file %s does not exist" % names_file)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".%s." % os.path.basename(out), suffix=".tmp", dir=parent)
    try:
        deploy_path = os.path.join(tmp, "deploy.prototxt")
        with open(deploy_path, "w") as f:
            f.write(deploy_prototxt(net_path, command_line=command_line, net=deploy))
        shutil.copyfile(weights, os.path.join(tmp, "weights.caffemodel"))
        if mean_src:
            mean = _mean_image(mean_src)
            np.save(os.path.join(tmp, "mean.npy"), mean)
            spec_input["mean_file"] = "mean.npy"
            spec_input["mean_source"] = os.path.abspath(mean_src)
        caffe = import_caffe()
        cnet = caffe.Net(deploy_path, caffe.TEST)
        check_weights(cnet, weights)
        num_classes = int(np.prod(cnet.blobs[probs[0].top[0]].data.shape[1:]))
        names = read_class_names(names_file, "deploy") if names_file else [str(c) for c in range(num_classes)]
        if len(names) != num_classes:
            raise MultilabelLossError("class names file %s has %d names but the net has C=%d classes"
                                      % (names_file, len(names), num_classes))
        opencv_error = _opencv_check(deploy_path, weights, blob, shape, probs[0].top[0])
        if opencv_error:
            warn("OpenCV's DNN cannot read %s, so --engine opencv will not run it: %s" % (out, opencv_error))
        activation = probs[0].type
        spec = {
            "format": MODEL_FORMAT, "format_version": FORMAT_VERSION,
            "deploy": "deploy.prototxt", "weights": "weights.caffemodel",
            "input": spec_input, "output": probs[0].top[0], "activation": activation,
            "class_names": names,
            # the two-way loss's ranking scores ("Power", the identity) have no threshold: top-k:1 as for a softmax
            "rule": rule or ("top-k:1" if activation in ("Softmax", "Power") else "threshold:0.5"),
            "thresholds": None, "calibration": None,
            "opencv": opencv_error is None, "opencv_error": opencv_error,
            "provenance": dict({"train_net": os.path.abspath(net_path), "weights": os.path.abspath(weights),
                                "snapshot_iteration": snapshot_iteration(weights),
                                "class_names_file": os.path.abspath(names_file) if names_file else None,
                                "command": command_line,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, **_versions()),
        }
        write_spec(tmp, spec)
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=".%s." % os.path.basename(out), suffix=".old", dir=parent)
            os.rmdir(old)
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return spec


def add_deploy_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("deploy", help="a deploy prototxt, or with --weights --out a model folder for predict and "
                       "evaluate", description=__doc__.split("\n\n", 1)[1].split("\n\nParameters")[0]
                       + "\n\nWith --weights W.caffemodel --out MODEL/: a model folder (deploy.prototxt, the weights, "
                       "model.json) that `predict MODEL/` and `evaluate MODEL/` read.",
                       epilog=DEPLOY_EXAMPLES % {"prog": "softmax-multilabel deploy"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net", help="train_val prototxt")
    p.add_argument("--input-shape", action="append", metavar="[BLOB=]N,C,H,W",
                   help="shape of the Input layer (repeatable, BLOB= for several inputs; default: the net's own "
                        "Input shape, else the TEST net's data shape)")
    p.add_argument("-o", "--output", help="write the deploy prototxt here instead of stdout")
    folder = p.add_argument_group("a model folder")
    folder.add_argument("--weights", metavar="W.caffemodel", help="the trained weights (with --out)")
    folder.add_argument("--out", metavar="MODEL", help="write a model folder here (with --weights)")
    folder.add_argument("--class-names", help="a file with one class name per line (default: the data layer's "
                        "class_names, else 0..C-1)")
    folder.add_argument("--rule", help="the default decision rule of predict (default: top-k:1 for a softmax "
                        "loss, threshold:0.5 for a sigmoid loss)")
    given = p.add_argument_group("the input, for a net whose data layer does not say it (or to override it)")
    given.add_argument("--input-resize", metavar="H,W", help="resize images to H,W first (bilinear)")
    given.add_argument("--input-crop", type=int, metavar="S", help="then a centre crop S x S")
    given.add_argument("--input-mean", metavar="V[,V,V]", help="per-channel mean subtracted (after the crop)")
    given.add_argument("--input-mean-file", metavar="F", help="a mean image (.binaryproto or .npy, C x H x W)")
    given.add_argument("--input-scale", type=float, metavar="S", help="multiply (x - mean) by S")
    given.add_argument("--input-order", choices=("bgr", "rgb"), help="colour channel order (default bgr, Caffe's)")
    p.set_defaults(run=run_deploy)
    return p


DEPLOY_EXAMPLES = """examples:
  %(prog)s train_val.prototxt -o deploy.prototxt
  %(prog)s train_val.prototxt --weights snap_iter_500.caffemodel --out model/
  %(prog)s train_val.prototxt --weights W.caffemodel --out model/ --input-resize 256,256 --input-crop 224 \\
      --input-mean 104,117,123
exit status: 0 done, 2 bad input (one line on stderr)
"""


def run_deploy(args: argparse.Namespace) -> int:
    command = "softmax-multilabel deploy %s" % args.net + "".join(" --input-shape %s" % s
                                                                  for s in args.input_shape or ())
    shapes = parse_input_shapes(args.input_shape)
    overrides = _input_overrides(args)
    if args.out or args.weights:
        if not (args.out and args.weights):
            raise MultilabelLossError("a model folder needs --weights W.caffemodel and --out MODEL/ together")
        if args.output:
            raise MultilabelLossError("give -o/--output (a deploy prototxt) or --out (a model folder), not both")
        options = [("--weights", args.weights), ("--out", args.out), ("--class-names", args.class_names),
                   ("--rule", args.rule)] + [("--" + k.replace("_", "-"), v) for k, v in vars(args).items()
                                            if k.startswith("input_") and k != "input_shape" and v is not None]
        command += "".join(" %s %s" % (flag, shlex.quote(str(v))) for flag, v in options if v is not None)
        spec = write_model_folder(args.net, args.weights, args.out, shapes, overrides, args.class_names, args.rule,
                                  command)
        inp = spec["input"]
        sys.stdout.write("wrote %s: %d classes, %s output, input %s from %s\n"
                         % (args.out, len(spec["class_names"]), spec["activation"],
                            "x".join(map(str, inp["shape"])), inp["from"]))
        return 0
    if overrides or args.class_names or args.rule:
        raise MultilabelLossError("--input-*, --class-names and --rule describe a model folder: give --weights and "
                                  "--out too")
    text = deploy_prototxt(args.net, shapes, command)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["add_deploy_parser", "deploy_net", "deploy_prototxt", "describe_input", "parse_input_shapes",
           "run_deploy", "write_model_folder"]
