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
"""
import json
import os
import re
import subprocess
import sys
from typing import Any

from softmax_multilabel_layer.evaluation.netio import in_phase, is_data_layer, loss_probability, read_net
from softmax_multilabel_layer.params import MultilabelLossError

GLOG_PREFIX = r"^[FEWI]\d{8} [\d:.]+ +\d+ \S+\] "


def is_removed(layer):
    return is_data_layer(layer) or layer.type.endswith("Loss") or layer.type == "Accuracy" \
        or loss_probability(layer)[0] is not None or any(w != 0 for w in layer.loss_weight)


def _needed(layers, outputs):
    """The layers the blobs ``outputs`` depend on (e.g. not a Reshape of the labels that only fed a loss)."""
    needed, keep = set(outputs), []
    for layer in reversed(layers):
        if needed & set(layer.top):
            keep.append(layer)
            needed.update(layer.bottom)
    return keep[::-1]


def parse_input_shapes(values):
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


def _inputs(layers):
    """Blobs read by ``layers`` before any of them writes them, in order of first use."""
    produced, inputs = set(), []
    for layer in layers:
        for b in layer.bottom:
            if b not in produced and b not in inputs:
                inputs.append(b)
        produced.update(layer.top)
    return inputs


def _infer_shapes(path, net, names):
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


def deploy_net(path, input_shapes=None):
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
    unknown = sorted(set(shapes) - set(names))
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


def deploy_prototxt(path, input_shapes=None, command_line=None):
    """The deploy net as prototxt text, headed by a comment naming the command that generates it."""
    from google.protobuf import text_format
    net = deploy_net(path, input_shapes)
    probs = [layer for layer in net.layer if layer.name.startswith("prob")]
    header = ["# Generated by: %s" % (command_line or "softmax-multilabel deploy %s" % path),
              "# Data, loss and accuracy layers removed; %s (C++ layers, no Python layer needed)."
              % ", ".join('"%s" = %s(%s)' % (p.name, p.type, p.bottom[0]) for p in probs)]
    text = text_format.MessageToString(net)
    return "\n".join(header) + "\n" + text


def add_deploy_parser(sub):
    p = sub.add_parser("deploy", help="print a deploy prototxt (no data, loss or Python layer) for a train_val net",
                       description=__doc__.split("\n\n", 1)[1].split("\n\nParameters")[0],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("net", help="train_val prototxt")
    p.add_argument("--input-shape", action="append", metavar="[BLOB=]N,C,H,W",
                   help="shape of the Input layer (repeatable, BLOB= for several inputs; default: the net's own "
                        "Input shape, else the TEST net's data shape)")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.set_defaults(run=run_deploy)
    return p


def run_deploy(args):
    command = "softmax-multilabel deploy %s" % args.net + "".join(" --input-shape %s" % s
                                                                  for s in args.input_shape or ())
    text = deploy_prototxt(args.net, parse_input_shapes(args.input_shape), command)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["add_deploy_parser", "deploy_net", "deploy_prototxt", "parse_input_shapes", "run_deploy"]
