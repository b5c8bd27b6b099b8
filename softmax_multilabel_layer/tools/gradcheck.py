"""Numeric-versus-analytic gradient check of one layer of a Caffe net, C++ or Python.

Caffe's only gradient checker is the C++ ``GradientChecker`` of its own test
suite (``include/caffe/test/test_gradient_check_util.hpp``). This module does
the same check on any layer of any net from Python::

    report = check_layer_gradient("train.prototxt", "loss", fills={"label": "bernoulli:0.3"})
    print(format_report(report)); assert report.passed

Method, for the layer L with bottoms x and tops y:

* The net is loaded with ``force_backward: true`` and the layer's
  ``propagate_down`` set to the bottoms being checked. An in-place layer's
  top is given its own blob, so that perturbing the bottom is possible.
* Input blobs (``Input`` layers) are filled: from ``.npy`` files, from fill
  specs, or else N(0, 1), seeded. The net runs forward up to L once, so data
  layers fill their tops as in training.
* Objective J: if a top of L has a loss weight w (``loss_weight``, or
  Caffe's default 1 on a ``*Loss`` layer's first top), J = sum_t w_t sum(y_t)
  over those tops; otherwise J = sum_t sum(R_t * y_t), a seeded N(0, 1)
  random projection of every top.
* Analytic side: L's own backward, with ``top.diff`` = dJ/dy (w_t, or R_t).
* Numeric side: for each checked element x_i, central differences
  (J(x_i + h) - J(x_i - h)) / (x_i+ - x_i-), where x_i+- are the values the
  float blob actually holds. If the layer writes to its bottoms (reported),
  every evaluation first restores all of them, so it is still checked fairly.
* Rule (Caffe's): element i fails when |a_i - n_i| > threshold * max(|a_i|, |n_i|, floor),
  floor = 1. When every gradient is far below the floor (a loss averaged
  over a large batch), that rule is an absolute tolerance larger than the
  gradients themselves, and the report says so and suggests a ``floor``
  scaled to them: at N = 64 the blog layer's wrong gradient passes with
  floor 1 and fails with the suggested one.
  Kink handling (Caffe's): with ``kink_range`` >= 0, elements whose bottom
  value is within ``kink_range`` of +-``kink`` are skipped (e.g. ReLU at 0).
* Large bottoms: a seeded random subset of ``max_elements`` elements is
  checked (the report says so); ``max_elements=0`` checks every element.
* ``check_params``: the layer's parameter blobs (weights, biases) are checked
  too, their diffs zeroed first since Caffe accumulates them.
* Also reported: a bottom diff the layer leaves unwritten (it is set to NaN
  before backward), a layer that writes to its bottoms' data, and gradients
  too small for float central differences to resolve.
"""
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.tools.netfiles import check_files

# A fill: (random generator, blob shape) -> values for the blob.
Fill = Callable[[np.random.Generator, tuple[int, ...]], NDArray[Any]]

PHASES = ("train", "test")
ASSUMED_LOSS_WEIGHT = "This check gives it loss_weight: 1"     # in the note on a Python loss layer without one


class GradcheckError(ValueError):
    """A gradient check that cannot be run as asked (bad net, layer, bottom or fill)."""


@dataclass
class BlobCheck:
    """The result for one checked blob of the layer: a bottom, or one of its parameter blobs."""
    role: str                         # "bottom" or "param"
    index: int
    blob: str
    shape: tuple[int, ...]
    total: int
    checked: int = 0
    kinks_skipped: int = 0
    failures: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0        # |a - n| / max(|a|, |n|, floor), Caffe's scaled error (floor 1)
    worst_index: tuple[int, ...] = ()
    worst_analytic: float = 0.0
    worst_numeric: float = 0.0
    non_finite_analytic: int = 0      # NaN/inf in the layer's bottom diff (not written, or diverged)
    largest_gradient: float = 0.0     # max(|a|, |n|) over the checked elements
    suggested_floor: float = 0.0      # set when the floor dwarfs every gradient (see check_layer_gradient)
    unresolved: bool = False          # the numeric side's rounding error is comparable to the gradients

    @property
    def passed(self) -> bool:
        """No failure and a finite gradient (a blob whose every element is a skipped kink passes, checking nothing)."""
        return self.failures == 0 and self.non_finite_analytic == 0

    @property
    def all_zero(self) -> bool:
        """Elements were checked, but every analytic and numeric value was exactly 0: nothing was tested."""
        return self.checked > 0 and self.largest_gradient == 0 and self.non_finite_analytic == 0


@dataclass
class GradcheckReport:
    """The whole check: one :class:`BlobCheck` per checked bottom (and parameter blob), plus what was noticed."""
    layer: str
    layer_type: str
    objective: str
    stepsize: float
    threshold: float
    floor: float = 1.0
    checks: list[BlobCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return any(c.checked and not c.all_zero for c in self.checks) and all(c.passed for c in self.checks)

    @property
    def tested_nothing(self) -> bool:
        """Every checked element of every blob had analytic and numeric gradient exactly 0."""
        return any(c.checked for c in self.checks) and all(c.all_zero or not c.checked for c in self.checks)


# ---------------------------------------------------------------- fills

def parse_fill(spec: str) -> Fill:
    """A fill spec -> function(rng, shape) -> array.

    ``gaussian[:STD]``, ``uniform:LO:HI``, ``randint:LO:HI`` (integers in [LO, HI)),
    ``bernoulli:P`` (0/1 with P(1) = P), ``constant:V``, or a path to a ``.npy`` file.
    """
    if spec.endswith(".npy"):
        if not os.path.isfile(spec):
            raise GradcheckError("fill %r: no such .npy file" % spec)
        data = np.load(spec)
        return lambda rng, shape: data
    kind, _, rest = spec.partition(":")
    try:
        args = [float(a) for a in rest.split(":")] if rest else []
    except ValueError:
        raise GradcheckError("fill %r: arguments must be numbers" % spec) from None
    makers = {
        ("gaussian", 0): lambda rng, shape: rng.normal(size=shape),
        ("gaussian", 1): lambda rng, shape: rng.normal(scale=args[0], size=shape),
        ("uniform", 2): lambda rng, shape: rng.uniform(args[0], args[1], size=shape),
        ("randint", 2): lambda rng, shape: rng.integers(int(args[0]), int(args[1]), size=shape),
        ("bernoulli", 1): lambda rng, shape: rng.random(size=shape) < args[0],
        ("constant", 1): lambda rng, shape: np.full(shape, args[0]),
    }
    maker = makers.get((kind, len(args)))
    if maker is None:
        raise GradcheckError("fill %r: expected gaussian[:STD], uniform:LO:HI, randint:LO:HI, bernoulli:P, "
                             "constant:V or a .npy file" % spec)
    return maker


# ---------------------------------------------------------------- net preparation

def _call(what: str, fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """Run a Caffe step; an exception from it (say a Python layer's) becomes a GradcheckError naming the step."""
    try:
        return fn(*args, **kwargs)
    except GradcheckError:
        raise
    except Exception as exc:
        raise GradcheckError("%s failed: %s: %s%s" % (what, type(exc).__name__, exc, hint)) from exc


def _import_caffe() -> tuple[Any, Any, Any]:
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return caffe, caffe_pb2, text_format


def _default_bottoms(layer_param: Any) -> list[int]:
    """Caffe's tests check a loss layer's first bottom (the others are usually labels), other layers' every bottom."""
    is_loss = any(w != 0 for w in layer_param.loss_weight) or layer_param.type.endswith("Loss") \
        or _python_loss_without_weight(layer_param)
    return [0] if is_loss else list(range(len(layer_param.bottom)))


def _python_loss_without_weight(layer_param: Any) -> bool:
    """A Python layer whose class name says it is a loss, with no non-zero loss_weight.

    Python layers get no default loss weight.
    """
    return (layer_param.type == "Python" and "loss" in layer_param.python_param.layer.lower()
            and not any(w != 0 for w in layer_param.loss_weight))


def prepare_net_param(net_param: Any, layer_name: str,
                      bottoms: Iterable[int] | None = None) -> tuple[Any, list[int], list[str]]:
    """Rewrite a NetParameter for checking ``layer_name``; returns (net_param, checked bottom indices, notes).

    Sets ``force_backward``, the layer's ``propagate_down`` (true exactly for the
    checked bottoms), and gives an in-place top its own blob name.
    """
    matches = [layer for layer in net_param.layer if layer.name == layer_name]
    if not matches:
        if net_param.layers:
            raise GradcheckError("the net uses the old V1 'layers' field; upgrade it with Caffe's "
                                 "upgrade_net_proto_text tool first")
        raise GradcheckError("no layer named %r; the layers are: %s"
                             % (layer_name, ", ".join(layer.name for layer in net_param.layer)))
    notes: list[str] = []
    count = len(matches[0].bottom)
    if count == 0:
        raise GradcheckError("layer %r has no bottoms: nothing to check" % layer_name)
    if bottoms is None:
        bottoms = _default_bottoms(matches[0])
    checked = sorted(set(bottoms))
    bad = [k for k in checked if not 0 <= k < count]
    if bad:
        raise GradcheckError("--bottom %s out of range: layer %r has %d bottom(s) (%s), indices 0..%d"
                             % (bad[0], layer_name, count, ", ".join(matches[0].bottom), count - 1))
    net_param.force_backward = True
    if _python_loss_without_weight(matches[0]):
        layer = matches[0]
        notes.append("layer %r (Python %s) has no loss_weight%s: in `caffe train` Caffe would add nothing of it to "
                     "the objective and never run its backward, so the net would not train from it; add "
                     "loss_weight: 1 to the layer. %s, so its gradient is checked as training would use it once "
                     "the weight is there, on its first bottom (the others are labels; --bottom K checks another)"
                     % (layer.name, layer.python_param.layer, " (it is 0)" if len(layer.loss_weight) else "",
                        ASSUMED_LOSS_WEIGHT))
        for copy in matches:
            del copy.loss_weight[:]
            copy.loss_weight.extend([1.0] + [0.0] * (len(copy.top) - 1))
    for layer in matches:
        del layer.propagate_down[:]
        layer.propagate_down.extend(k in checked for k in range(len(layer.bottom)))
        for t, top in enumerate(layer.top):
            if top in layer.bottom:
                layer.top[t] = top + "__gradcheck_top"
                notes.append("in-place layer: its top %r was given its own blob %r for the check"
                             % (top, layer.top[t]))
    return net_param, checked, notes


def load_net(prototxt: str, layer_name: str, bottoms: Iterable[int] | None = None, weights: str | None = None,
             phase: str = "train") -> tuple[Any, list[int], list[str]]:
    """Load ``prototxt`` prepared for checking ``layer_name``; returns (net, checked bottom indices, notes)."""
    caffe, caffe_pb2, text_format = _import_caffe()
    if phase not in PHASES:
        raise GradcheckError("phase must be one of %s, got %r" % (", ".join(PHASES), phase))
    if not os.path.isfile(prototxt):
        raise GradcheckError("no such net file: %s" % prototxt)
    if weights is not None and not os.path.isfile(weights):
        raise GradcheckError("no such weights file: %s" % weights)
    net_param = caffe_pb2.NetParameter()
    try:
        with open(prototxt) as f:
            text_format.Merge(f.read(), net_param)
    except text_format.ParseError as exc:
        raise GradcheckError("%s is not a valid Caffe net prototxt: %s" % (prototxt, exc)) from None
    check_files(net_param, phase, prototxt)           # Caffe aborts the process on a missing data file
    known = set(caffe.layer_type_list())
    unknown = sorted({layer.type for layer in net_param.layer} - known)
    if unknown:
        raise GradcheckError("this Caffe has no layer type(s) %s (a Caffe fork's layer, or a typo?)"
                             % ", ".join(unknown))
    net_param, checked, notes = prepare_net_param(net_param, layer_name, bottoms)
    # Python layers' modules are imported like `caffe train` does (PYTHONPATH), plus the
    # current folder and the net's folder, where a user's layer module usually sits.
    for folder in (os.getcwd(), os.path.dirname(os.path.abspath(prototxt))):
        if folder not in sys.path:
            sys.path.append(folder)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as tmp:
        tmp.write(text_format.MessageToString(net_param))
    try:
        caffe.set_mode_cpu()
        net = _call("building the net", caffe.Net, tmp.name, caffe.TRAIN if phase == "train" else caffe.TEST,
                    weights=weights)
    finally:
        os.unlink(tmp.name)
    if layer_name not in list(net._layer_names):
        raise GradcheckError("layer %r is not in the %s phase of the net (see its include/exclude rules)"
                             % (layer_name, phase.upper()))
    return net, checked, notes


def fill_inputs(net: Any, fills: Mapping[str, str] | None = None, seed: int = 0) -> None:
    """Fill the net's input blobs (Input layers): a fill spec per blob name, default N(0, 1)."""
    fills = dict(fills or {})
    unknown = sorted(set(fills) - set(net.inputs))
    if unknown:
        raise GradcheckError("--fill for %s: not an input blob of the net; its input blobs are: %s"
                             % (", ".join(unknown), ", ".join(net.inputs) or "none (data layers fill it)"))
    rng = np.random.default_rng(seed)
    for name in net.inputs:
        blob = net.blobs[name]
        value = np.asarray(parse_fill(fills.get(name, "gaussian"))(rng, blob.data.shape))
        if value.shape != blob.data.shape and value.size == blob.data.size:
            value = value.reshape(blob.data.shape)
        if value.shape != blob.data.shape:
            raise GradcheckError("input blob %r has shape %s, the fill gave %s"
                                 % (name, tuple(blob.data.shape), tuple(value.shape)))
        blob.data[...] = value


# ---------------------------------------------------------------- the check

def _objective(net: Any, layer_name: str, rng: np.random.Generator) -> tuple[dict[str, NDArray[np.float64]], str]:
    """dJ/dy for each top of the layer, and a description of J."""
    tops = list(net.top_names[layer_name])
    if not tops:
        raise GradcheckError("layer %r has no tops: no objective to differentiate" % layer_name)
    weights = net.blob_loss_weights
    loss_tops = [t for t in tops if weights.get(t, 0) != 0]
    if loss_tops:
        grads = {t: np.full(net.blobs[t].data.shape, weights[t]) for t in loss_tops}
        text = " + ".join("%g * sum(%s)" % (weights[t], t) for t in loss_tops)
        others = [t for t in tops if t not in loss_tops]
        if others:
            text += " (top(s) %s have no loss weight: not part of the objective)" % ", ".join(others)
        return grads, "J = " + text
    grads = {t: rng.normal(size=net.blobs[t].data.shape) for t in tops}
    return grads, "J = " + " + ".join("sum(R_%s * %s)" % (t, t) for t in tops) + ", R ~ N(0, 1) seeded"


def check_layer_gradient(prototxt: str, layer_name: str, bottoms: Iterable[int] | None = None,
                         weights: str | None = None, phase: str = "train", fills: Mapping[str, str] | None = None,
                         seed: int = 0, stepsize: float = 1e-2, threshold: float = 1e-2, floor: float = 1.0,
                         kink: float = 0.0, kink_range: float = -1.0, max_elements: int = 1000,
                         check_params: bool = False) -> GradcheckReport:
    """Check one layer's backward against central differences; returns a :class:`GradcheckReport`.

    ``bottoms``: indices of the bottoms to check (default: bottom 0 of a loss
    layer, every bottom of another layer). ``check_params``: also check the
    layer's parameter blobs (weights, biases), as Caffe's checker does.
    """
    if not stepsize > 0 or not threshold > 0 or not floor > 0:
        raise GradcheckError("stepsize, threshold and floor must be > 0, got %r, %r and %r"
                             % (stepsize, threshold, floor))
    if max_elements < 0:
        raise GradcheckError("max_elements must be >= 0 (0 = all), got %r" % max_elements)
    caffe, _, _ = _import_caffe()
    caffe.set_random_seed(seed)                 # the weight fillers, for a reproducible check
    net, bottoms, notes = load_net(prototxt, layer_name, bottoms, weights, phase)
    fill_inputs(net, fills, seed)
    defaulted = [name for name in net.inputs if name not in (fills or {})]
    hint = (" (input blob(s) %s were filled with N(0, 1); give values the net accepts with --fill BLOB=SPEC)"
            % ", ".join(defaulted)) if defaulted else ""
    index = list(net._layer_names).index(layer_name)
    layer = net.layers[index]
    rng = np.random.default_rng(seed)
    _call("the forward pass up to layer %r" % layer_name, net._forward, 0, index - 1, hint=hint)

    bottom_names = list(net.bottom_names[layer_name])
    targets = [("bottom", k, bottom_names[k], net.blobs[bottom_names[k]]) for k in bottoms]
    if check_params:
        targets += [("param", j, "%s[%d]" % (layer_name, j), blob) for j, blob in enumerate(layer.blobs)]
        if not layer.blobs:
            notes.append("the layer has no parameter blobs to check")
    restored = [net.blobs[name] for name in bottom_names] + list(layer.blobs)
    saved = [blob.data.copy() for blob in restored]
    top_grads, objective = _objective(net, layer_name, rng)
    report = GradcheckReport(layer_name, layer.type, objective, stepsize, threshold, floor, notes=notes)

    def restore() -> None:
        for blob, data in zip(restored, saved, strict=True):
            blob.data[...] = data

    def evaluate() -> float:
        _call("layer %r forward" % layer_name, net._forward, index, index, hint=hint)
        return sum(float(np.dot(net.blobs[t].data.ravel().astype(np.float64), g.ravel()))
                   for t, g in top_grads.items())

    j0 = evaluate()
    if not math.isfinite(j0):
        raise GradcheckError("the objective is %r at the starting point%s" % (j0, hint))
    for role, _, _, blob in targets:
        # A bottom diff the layer does not write stays NaN; parameter diffs accumulate, so they start at 0.
        blob.diff[...] = np.nan if role == "bottom" else 0
    for t, g in top_grads.items():
        net.blobs[t].diff[...] = g
    _call("layer %r backward" % layer_name, net._backward, index, index)
    analytic = [blob.diff.astype(np.float64).ravel() for _, _, _, blob in targets]
    written = [k for k, name in enumerate(bottom_names) if not np.array_equal(net.blobs[name].data, saved[k])]
    # Only a layer that writes to its inputs needs them all restored before each evaluation;
    # otherwise putting back the one perturbed element is enough.
    restore_all = any(not np.array_equal(blob.data, data) for blob, data in zip(restored, saved, strict=True))
    restore()
    if written:
        notes.append("the layer wrote to the data of bottom(s) %s during forward/backward; a Caffe layer must not "
                     "(other layers read the same blob). Each evaluation restored them."
                     % ", ".join("%d (%s)" % (k, bottom_names[k]) for k in written))

    for (role, k, name, blob), grad in zip(targets, analytic, strict=True):
        check = BlobCheck(role, k, name, tuple(blob.data.shape), blob.count)
        check.non_finite_analytic = int(np.count_nonzero(~np.isfinite(grad)))
        original = saved[k if role == "bottom" else len(bottom_names) + k].ravel()   # before any forward
        if max_elements and blob.count > max_elements:
            chosen = np.sort(rng.choice(blob.count, size=max_elements, replace=False))
            notes.append("%s %d (%s): checked a seeded random subset of %d of its %d elements "
                         "(seed %d; max_elements=0 checks all)" % (role, k, name, max_elements, blob.count, seed))
        else:
            chosen = np.arange(blob.count)
        largest_objective = 0.0
        for i in chosen:
            x = float(original[i])
            if kink_range >= 0 and kink - kink_range <= abs(x) <= kink + kink_range:
                check.kinks_skipped += 1
                continue
            values = []
            flat = blob.data.reshape(-1)
            for sign in (1, -1):
                if restore_all:
                    restore()
                flat[i] = x + sign * stepsize
                held = float(flat[i])           # read before forward: a layer may write to its bottom
                values.append((evaluate(), held))
            flat[i] = x
            (j_plus, x_plus), (j_minus, x_minus) = values
            _record(check, i, float(grad[i]), (j_plus - j_minus) / (x_plus - x_minus), threshold, floor)
            largest_objective = max(largest_objective, abs(j_plus), abs(j_minus))
        if not check.checked:
            notes.append("%s %d (%s): every selected element is within the kink range, so none was checked"
                         % (role, k, name))
        # Rounding of the objective alone can make the numeric side wrong by about eps * |J| / step.
        noise = float(np.finfo(blob.data.dtype).eps) * largest_objective / stepsize
        suggested = float("%.2g" % max(0.1 * check.largest_gradient, 4 * noise / threshold))
        if noise > 0.1 * check.largest_gradient:
            check.unresolved = True
            notes.append("%s %d (%s): the numeric gradients' rounding error (about eps * |J| / step = %.2g) exceeds "
                         "a tenth of the largest gradient (%.3g), so central differences cannot resolve these "
                         "gradients; check a smaller batch, or fewer classes"
                         % (role, k, name, noise, check.largest_gradient))
        elif 0 < check.largest_gradient < 0.1 * floor and suggested < 0.5 * floor:
            check.suggested_floor = suggested
            notes.append("%s %d (%s): its gradients are at most %.3g, far below the floor %g, so the rule allows "
                         "errors up to %.3g, more than the gradients themselves; for a check relative to their "
                         "size use --floor %g (a tenth of the largest gradient, or 4x the objective's rounding "
                         "noise / threshold if larger)"
                         % (role, k, name, check.largest_gradient, floor, threshold * floor, suggested))
        report.checks.append(check)
    restore()
    return report


def _record(check: BlobCheck, flat_index: int, analytic: float, numeric: float, threshold: float, floor: float) -> None:
    """Apply Caffe's rule to one element and keep the worst one."""
    error = abs(analytic - numeric)
    scale = max(abs(analytic), abs(numeric), floor)
    check.largest_gradient = max(check.largest_gradient, abs(analytic), abs(numeric))
    rel = error / scale if math.isfinite(error) else math.inf
    check.checked += 1
    if not error <= threshold * scale:          # NaN counts as a failure
        check.failures += 1
    if check.checked == 1 or rel > check.max_rel_error:
        check.worst_index = tuple(int(v) for v in np.unravel_index(flat_index, check.shape))
        check.worst_analytic, check.worst_numeric = analytic, numeric
    check.max_rel_error = max(check.max_rel_error, rel)
    check.max_abs_error = max(check.max_abs_error, error if math.isfinite(error) else math.inf)


def format_report(report: GradcheckReport) -> str:
    """The report as text: a header, one table row per bottom, notes, and the verdict."""
    lines = ["layer %r (%s): %s" % (report.layer, report.layer_type, report.objective),
             "rule: |analytic - numeric| <= %g * max(|analytic|, |numeric|, %g), central differences, step %g"
             % (report.threshold, report.floor, report.stepsize), ""]
    header = ("checked blob", "name", "elements", "max abs error", "max rel error", "worst index", "analytic",
              "numeric", "failures", "result")
    rows = []
    for b in report.checks:
        checked = "%d/%d" % (b.checked, b.total) + (" (%d kinks skipped)" % b.kinks_skipped if b.kinks_skipped else "")
        rows.append(("%s %d" % (b.role, b.index), b.blob, checked, "%.3g" % b.max_abs_error, "%.3g" % b.max_rel_error,
                     str(b.worst_index), "%.6g" % b.worst_analytic, "%.6g" % b.worst_numeric, str(b.failures),
                     "none checked" if not b.checked and b.passed else "ALL ZERO" if b.all_zero
                     else "PASS" if b.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for b in report.checks:
        if b.all_zero:
            lines.append("%s %d (%s): every analytic and numeric gradient of the %d checked elements is exactly 0, "
                         "so nothing was tested (weights all 0, e.g. no weight_filler: Caffe's default filler is "
                         "constant 0? a ReLU or mask that is off everywhere?)" % (b.role, b.index, b.blob, b.checked))
        if b.non_finite_analytic:
            lines.append("%s %d (%s): %d non-finite values in the layer's gradient (diff not written, or NaN/inf)"
                         % (b.role, b.index, b.blob, b.non_finite_analytic))
    if report.notes:
        lines.append("")
        lines.extend("note: " + note for note in report.notes)
    lines.append("")
    caveat = any(c.unresolved or c.suggested_floor for c in report.checks)
    if report.tested_nothing:
        lines.append("gradient check TESTED NOTHING: every analytic and numeric value was 0")
        return "\n".join(lines)
    assumed = any(ASSUMED_LOSS_WEIGHT in note for note in report.notes)
    lines.append("gradient check %s%s" % ("FAILED" if not report.passed else
                                          "PASSED under this rule; see the notes for why it is weak here" if caveat
                                          else "PASSED",
                                          " (with loss_weight: 1, which the prototxt lacks: see the note)"
                                          if assumed else ""))
    return "\n".join(lines)
