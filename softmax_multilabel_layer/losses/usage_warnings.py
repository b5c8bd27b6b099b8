"""Warnings for nets that run without error but will not learn as meant. No Caffe import at module level.

Two mistakes pass silently through Caffe, so the layers warn about them once:

* **No loss weight.** Caffe writes a top's ``loss_weight`` into its diff while
  it builds the net and leaves it 0 when none is given. A ``Python`` layer gets
  no default loss weight, so in the TRAIN phase a zero ``top[0].diff`` means
  that Caffe neither adds the loss to the objective nor runs the layer's
  backward: ``caffe train`` exits 0 and the net learns nothing
  (``Iteration 100, loss = 0`` beside ``Train net output #0: loss = 2.14``).
  A deliberate ``loss_weight: 0`` (a monitor-only loss) gets the same one
  warning, worded for that case.
* **Labels above 1 with** ``"normalize_targets": "count"``, e.g. 0/255 masks
  stored as float: the targets y/M then sum to 255, not 1, and the loss is
  255 times too large. Real-valued labels are legal, so this only warns; it
  looks at the first :data:`LABEL_BATCHES_CHECKED` batches of each layer.

The warnings go through Python's :mod:`warnings` module as
:class:`MultilabelLossWarning`, so ``caffe train`` prints them in its log, and
Python users can filter them or turn them into errors
(``warnings.simplefilter("error", MultilabelLossWarning)``).
"""
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TRAIN = 0                     # caffe.TRAIN, the value of a Python layer's self.phase
LABEL_BATCHES_CHECKED = 10


class MultilabelLossWarning(UserWarning):
    """A net that runs, but will not train as its author meant."""


def _warn(message: str) -> None:
    warnings.warn(message, MultilabelLossWarning, stacklevel=4)      # the layer's forward


# ---------------------------------------------------------------- loss weight

def check_loss_weight(layer: Any, top: Any) -> None:
    """Warn once if ``layer`` (a Caffe Python loss layer, in forward) has no loss weight in the TRAIN phase."""
    if getattr(layer, "_loss_weight_checked", False):
        return
    layer._loss_weight_checked = True
    if getattr(layer, "phase", TRAIN) != TRAIN or np.any(top[0].diff != 0):
        return
    class_name = type(layer).__name__
    names, weights = _layers_in_caffe_train_net(class_name, getattr(layer, "param_str", ""))
    _warn(loss_weight_message(class_name, names, weights))


def loss_weight_message(class_name: str, names: Sequence[str] = (),
                        weights: Sequence[Sequence[float]] = ()) -> str:
    """The text of the no-loss-weight warning.

    ``names``: the prototxt names of the layers this may be (``class_name``
    with the same ``param_str``); ``weights``: their ``loss_weight`` lists, to
    tell a missing weight from a deliberate 0. Both may be empty (unknown).
    """
    which = ("layer %s (%s)" % (" or ".join('"%s"' % n for n in names), class_name) if names
             else "this %s layer" % class_name)
    name = names[0] if len(names) == 1 else "loss"
    deliberate = bool(weights) and all(len(w) > 0 for w in weights)
    missing = bool(weights) and all(len(w) == 0 for w in weights)
    effect = ("so Caffe adds nothing of it to the training loss and never runs its backward pass: "
              "it is monitored only, and the net does not learn from it")
    if deliberate:
        return ("%s has loss_weight: 0, %s. That is right for a monitor-only loss; to train with it, "
                "set loss_weight: 1." % (which, effect))
    lines = ["%s has no loss weight, %s. The training loss will stay 0 (\"Iteration N, loss = 0\")." % (which, effect),
             "A Python layer gets no loss weight by default: add loss_weight: 1 to the layer, e.g.",
             "    layer { name: \"%s\" type: \"Python\" ... top: \"loss\" loss_weight: 1  "
             "python_param { ... } }" % name]
    if not missing:
        lines.append("(If loss_weight: 0 is deliberate, for a monitor-only loss, ignore this warning.)")
    return "\n".join(lines)


def _layers_in_caffe_train_net(class_name: str, param_str: str) -> tuple[list[str], list[list[float]]]:
    """When this process is ``caffe train --solver S``: the names and loss_weight lists of the
    net's Python layers running ``class_name`` with ``param_str`` (best effort; ([], []) if unknown)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        if "train" not in argv:
            return [], []
        solver_path = None
        for i, arg in enumerate(argv):
            if arg in ("--solver", "-solver") and i + 1 < len(argv):
                solver_path = argv[i + 1]
            elif arg.startswith(("--solver=", "-solver=")):
                solver_path = arg.split("=", 1)[1]
        if not solver_path:
            return [], []
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
        solver = caffe_pb2.SolverParameter()
        with open(solver_path) as f:
            text_format.Merge(f.read(), solver)
        if solver.HasField("train_net_param") or solver.HasField("net_param"):
            net = solver.train_net_param if solver.HasField("train_net_param") else solver.net_param
        else:
            net = caffe_pb2.NetParameter()
            with open(os.path.join(os.getcwd(), solver.train_net or solver.net)) as f:
                text_format.Merge(f.read(), net)
        found = [layer for layer in net.layer
                 if layer.type == "Python" and layer.python_param.layer == class_name
                 and layer.python_param.param_str == param_str
                 and not any(rule.HasField("phase") and rule.phase != TRAIN for rule in layer.include)]
        return [layer.name for layer in found], [list(layer.loss_weight) for layer in found]
    except Exception:            # only a better message is lost
        return [], []


# ---------------------------------------------------------------- label values

def check_count_labels(layer: Any, labels: ArrayLike, owner: str, blob: str = "labels") -> None:
    """Warn once if a label exceeds 1 while ``normalize_targets`` is ``"count"`` (first batches only)."""
    seen = getattr(layer, "_label_batches_checked", 0)
    if seen >= LABEL_BATCHES_CHECKED:
        return
    layer._label_batches_checked = seen + 1
    message = count_labels_message(labels, owner, blob)
    if message:
        layer._label_batches_checked = LABEL_BATCHES_CHECKED
        _warn(message)


def count_labels_message(labels: ArrayLike, owner: str, blob: str = "labels") -> str | None:
    """The warning text if ``labels`` has a value > 1 (for ``"normalize_targets": "count"``), else None."""
    values = np.asarray(labels)
    if values.size == 0 or not values.max() > 1:          # NaN: the loss's own check reports it
        return None
    where = np.unravel_index(int(np.argmax(values)), values.shape)
    value = values[where].item()
    return ('%s: %s has values above 1 (largest %g, at index %s of shape %s) with "normalize_targets": "count". '
            "Targets are y/M over the M non-zero labels, so they no longer sum to 1 and the loss and gradient "
            "grow with the label values (0/255 masks give a loss 255 times too large). Likely fixes: labels in "
            '0/1 (for 0/255 masks, divide by 255), or "normalize_targets": "sum" (targets y / sum(y)) for '
            "real-valued labels. Real-valued labels are allowed: if this is what you want, ignore this warning."
            % (owner, blob, value, tuple(int(i) for i in where), tuple(values.shape)))


def check_forward(layer: Any, bottom: Any, top: Any) -> None:
    """Both checks, for a loss layer's ``forward`` (one call per forward pass; cheap after the first batches)."""
    check_loss_weight(layer, top)
    options = layer.options
    if getattr(options, "normalize_targets", None) == "count":
        if getattr(options, "label_format", "dense") == "dense":
            check_count_labels(layer, bottom[1].data, options.owner, "labels")
        elif len(bottom) > 2:
            check_count_labels(layer, bottom[2].data, options.owner, "label_weights")
