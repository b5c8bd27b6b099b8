"""``softmax-multilabel evaluate``: every metric of :mod:`.metrics` over a whole test set.

Caffe's solver averages per-batch test outputs, so a per-batch mAP is wrong, and ``Accuracy`` is
single-label. This command runs the TEST phase of the user's own net (whatever its data layers) for
``--iters`` batches, collects a scores blob and a labels blob (default: the loss layer's bottoms),
applies the softmax or sigmoid the loss implies, and computes the metrics once over all samples. A model
folder (``deploy --out``) is evaluated on a list file (or an LMDB or HDF5 data set, :mod:`.sources`), over
every image exactly once, and ``--calibrate`` writes per-class thresholds into its model.json (on a
validation list, never the test list)::

    softmax-multilabel evaluate model/ --list val.txt --root-folder images/ --calibrate
    softmax-multilabel evaluate model/ --list test.txt --root-folder images/ --json test.json
    softmax-multilabel evaluate model/ --lmdb data/images_lmdb --label-source data/labels_h5.txt
    softmax-multilabel evaluate model/ --hdf5 data_h5/list.txt
    softmax-multilabel evaluate --net train_val.prototxt --weights snap_iter_3000.caffemodel --iters 20
    softmax-multilabel evaluate --scores scores.npy --labels labels.npy --rule mass:0.9 --json out.json
    softmax-multilabel evaluate --net train_val.prototxt --snapshots output/run --iters 20 --plot map.png
"""
import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.evaluation.model import ENGINES, Model, set_thresholds
from softmax_multilabel_layer.evaluation.netio import (
    class_names,
    collect,
    probabilities,
    progress,
    snapshot_iteration,
)
from softmax_multilabel_layer.evaluation.report import report
from softmax_multilabel_layer.evaluation.rules import (
    RULE_SYNTAX,
    calibrate_thresholds,
    check_rule,
    parse_rule,
    save_thresholds,
)
from softmax_multilabel_layer.params import MultilabelLossError

# ---------------------------------------------------------------------------------------------------------------
# reports

def format_table(report: dict[str, Any]) -> str:
    lines = ["%-34s %s" % ("metric", "value")]
    for key, value in report.items():
        if isinstance(value, float):
            lines.append("%-34s %.6f" % (key, value))
    missing = report["missing_positives"]
    lines.append("%-34s %d samples, %d classes%s" % (
        "no true label (left out of AP)", missing["samples"], len(missing["classes"]),
        (": " + ", ".join(map(str, missing["classes"][:10])) + (" ..." if len(missing["classes"]) > 10 else ""))
        if missing["classes"] else ""))
    lines.append("%-34s %s (%d samples x %d classes)" % ("decision rule", report["rule"], report["samples"],
                                                        report["classes"]))
    return "\n".join(lines)


def per_class_rows(labels: np.ndarray, scores: np.ndarray, names: Sequence[str] | None = None
                   ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    ap = M.average_precision(labels, scores, None)
    thresholds, f1 = calibrate_thresholds(labels, scores)
    support = labels.sum(axis=0)
    names = names or [str(c) for c in range(labels.shape[1])]
    return [{"class": c, "name": names[c], "AP": ap[c], "support": int(support[c]),
             "best_threshold": thresholds[c], "F1": f1[c]} for c in range(labels.shape[1])], thresholds, f1


def write_per_class(path: str, rows: list[dict[str, Any]]) -> None:
    with _replacing(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "name", "AP", "support", "best_threshold", "F1"])
        for r in rows:
            w.writerow([r["class"], r["name"], "%.6f" % r["AP"] if np.isfinite(r["AP"]) else "",
                        r["support"], "%.6g" % r["best_threshold"] if np.isfinite(r["best_threshold"]) else "",
                        "%.6f" % r["F1"]])


UNDEFINED = {"mAP": "no class has a true label", "AP_micro": "no true label at all",
             "AP_samples": "no sample has a true label", "recall_at": "no sample has a true label"}


def json_ready(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with every NaN replaced by ``null`` (NaN is not JSON) and, when there is one, an
    ``"undefined"`` entry naming each such metric and why it has no value on these labels."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    out = clean(summary)
    undefined = {}
    for key, value in summary.items():
        if isinstance(value, float) and math.isnan(value):
            reason = next((why for prefix, why in UNDEFINED.items() if key.startswith(prefix)),
                          "no samples" if not summary.get("samples") else "not defined on these labels")
            undefined[key] = "null: undefined, %s" % reason
    if undefined:
        out["undefined"] = undefined
    return out


class _replacing:
    """``with _replacing(path) as f``: write ``path`` under a temporary name beside it and rename it into
    place only when the block completes, so a failure never leaves half a file (or destroys an old one)."""

    def __init__(self, path: str, mode: str = "w", newline: str | None = None) -> None:
        self.path, self.tmp = path, "%s.tmp-%d" % (path, os.getpid())
        self.file = open(self.tmp, mode, newline=newline)

    def __enter__(self) -> Any:
        return self.file

    def __exit__(self, kind: Any, value: Any, trace: Any) -> None:
        self.file.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def check_output(option: str, path: str) -> None:
    """Refuse an output path that cannot be written (missing folder, a folder, no permission) before any
    work is done, with a one-line error naming the option."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MultilabelLossError("%s %s: is a folder; expected a file name" % (option, path))
    if not os.path.isdir(folder):
        raise MultilabelLossError("%s %s: folder %s does not exist" % (option, path, folder))
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise MultilabelLossError("%s %s: not writable" % (option, path))


def pr_staircase(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of the drawn PR curve: each precision held over the recall interval ending at it
    (from (0, 1) up at recall 0), so the area under the polyline is ``sum(diff(recall) * precision[1:])``,
    the AP (see :func:`..metrics.precision_recall_curve`)."""
    return np.repeat(recall, 2)[:-1], np.repeat(precision, 2)[1:]


def figure(labels: np.ndarray, scores: np.ndarray, names: Sequence[str] | None = None,
           history: Sequence[tuple[int, float]] | None = None) -> Any:
    """The matplotlib figure of :func:`plot`: micro-averaged PR curve (title: micro AP), PR curves of the 5
    worst classes (legend: their AP), histogram of per-class AP, and mAP against iteration when
    ``history`` [(iteration, mAP)] is given. The area under each drawn PR curve is the AP it is shown with."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = names or [str(c) for c in range(labels.shape[1])]
    ap = M.average_precision(labels, scores, None)
    panels = 4 if history else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    micro = M.average_precision(labels, scores, "micro")
    if np.isfinite(micro):
        axes[0].plot(*pr_staircase(*M.precision_recall_curve(labels.ravel(), scores.ravel())))
    axes[0].set(title="micro-averaged PR (AP %.4f)" % micro if np.isfinite(micro) else
                "micro-averaged PR (no true label)", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    worst = [c for c in np.argsort(np.where(np.isnan(ap), np.inf, ap), kind="stable")[:5] if np.isfinite(ap[c])]
    for c in worst:
        axes[1].plot(*pr_staircase(*M.precision_recall_curve(labels[:, c], scores[:, c])),
                     label="%s (AP %.3f)" % (names[c], ap[c]))
    axes[1].set(title="5 worst classes", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    if worst:
        axes[1].legend(fontsize=8, loc="lower left")
    finite = ap[np.isfinite(ap)]
    axes[2].hist(finite, bins=20, range=(0, 1))
    axes[2].set(title="per-class AP (mAP %.4f)" % finite.mean() if len(finite) else "per-class AP (no true label)",
                xlabel="AP", ylabel="classes")
    if history:
        its, maps = zip(*history, strict=True)
        axes[3].plot(its, maps, "o-")
        axes[3].set(title="test mAP by snapshot", xlabel="iteration", ylabel="mAP")
    fig.tight_layout()
    return fig


def plot(path: str, labels: np.ndarray, scores: np.ndarray, names: Sequence[str] | None = None,
         history: Sequence[tuple[int, float]] | None = None) -> None:
    """PNG of :func:`figure`, written under a temporary name and renamed when complete."""
    import matplotlib.pyplot as plt
    fig = figure(labels, scores, names, history)
    with _replacing(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def _load_npy(path: str, option: str) -> np.ndarray:
    """An array from a .npy file; a one-line error for a file that is not one (a CSV, an .npz archive)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise MultilabelLossError("%s %s: %s" % (option, path, exc.strerror)) from None
    if magic[:4] == b"PK\x03\x04":
        with np.load(path) as archive:
            names = ", ".join(archive.files)
        raise MultilabelLossError("%s %s: an .npz archive (arrays: %s); expected one .npy array, e.g. "
                                  "np.save('x.npy', np.load('%s')['<name>'])" % (option, path, names, path))
    if magic != b"\x93NUMPY":
        raise MultilabelLossError("%s %s: not a .npy file (numpy's np.save format); a text or CSV file can be "
                                  "converted with np.save('x.npy', np.loadtxt('%s', delimiter=','))"
                                  % (option, path, path))
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise MultilabelLossError("%s %s: %s" % (option, path, exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# command line

EXAMPLES = """examples:
  %(prog)s model/ --list val.txt --root-folder images/ --calibrate
  %(prog)s model/ --list test.txt --root-folder images/ --json test.json
  %(prog)s model/ --lmdb data/images_lmdb --label-source data/labels_h5.txt
  %(prog)s --net train_val.prototxt --weights snap_iter_3000.caffemodel --iters 20 --plot pr.png
  %(prog)s --net train_val.prototxt --snapshots output/run --iters 20 --json metrics.json --plot map.png
  %(prog)s --scores scores.npy --labels labels.npy --rule thresholds:th.json --per-class classes.csv
exit status: 0 done, 2 bad input (one line on stderr)
"""


def add_evaluate_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="multi-label metrics (mAP, F1, ranking) over a whole test set",
                       description="Every metric of softmax_multilabel_layer.metrics over a whole test set: from a "
                       "trained net's TEST phase, from every snapshot in a folder, or from saved arrays.",
                       epilog=EXAMPLES % {"prog": "softmax-multilabel evaluate"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input: a model folder and a list, a net and weights (or --snapshots), or arrays")
    src.add_argument("model", nargs="?", metavar="MODEL/", help="a model folder (written by `deploy --out`), with "
                     "--list, --lmdb or --hdf5")
    src.add_argument("--list", help="with MODEL/: a list file (path, then labels), every image evaluated once")
    src.add_argument("--root-folder", default="", help="joined to the relative paths of --list")
    src.add_argument("--lmdb", metavar="IMAGES_LMDB", help="with MODEL/: instead of --list, an LMDB of Datum images "
                     "(convert_imageset, convert --format lmdb), every record once, in key order")
    src.add_argument("--label-source", metavar="SOURCE", help="with --lmdb: the labels, an LMDB of float_data rows "
                     "(default: labels_lmdb beside IMAGES_LMDB) or an HDF5 file or list (dataset label)")
    src.add_argument("--hdf5", metavar="SOURCE", help="with MODEL/: instead of --list, an HDF5 file or HDF5Data "
                     "list with datasets data (N x C x H x W images) and label, every row once")
    src.add_argument("--engine", choices=ENGINES, default=None, help="with MODEL/: caffe or opencv (default caffe "
                     "when it imports)")
    src.add_argument("--calibrate", action="store_true", help="with MODEL/: write per-class thresholds that "
                     "maximize F1 on this list into its model.json (predict then uses them); use a validation list")
    src.add_argument("--net", help="train_val prototxt; its TEST phase is run")
    src.add_argument("--weights", help=".caffemodel")
    src.add_argument("--snapshots", metavar="DIR", help="evaluate every .caffemodel in DIR (by iteration)")
    src.add_argument("--iters", type=int, help="TEST batches to run (e.g. test set size / batch size)")
    src.add_argument("--scores-blob", help="scores blob (default: the loss layer's first bottom)")
    src.add_argument("--labels-blob", help="labels blob (default: the loss layer's second bottom)")
    src.add_argument("--activation", choices=("auto", "softmax", "sigmoid", "none"), default="auto",
                     help="applied to the scores blob (default auto: as the loss implies, none for another blob)")
    src.add_argument("--scores", metavar="X.npy", help="N x C scores (probabilities) instead of a net")
    src.add_argument("--labels", metavar="Y.npy", help="N x C multi-hot labels, with --scores")
    out = p.add_argument_group("output")
    out.add_argument("--rule", default=None, help="label sets for F1 / Hamming / exact match: %s "
                     "(default: a model folder's rule, else top-k:1)" % RULE_SYNTAX)
    out.add_argument("--class-names", help="a file with one class name per line")
    out.add_argument("--json", help="write every metric (and the snapshots' mAP) here")
    out.add_argument("--per-class", metavar="CSV", help="per class: AP, support, best threshold, F1 at it")
    out.add_argument("--plot", metavar="PNG", help="PR curves, per-class AP histogram (and mAP by snapshot)")
    out.add_argument("--thresholds-out", metavar="JSON", help="per-class thresholds maximizing F1 (for predict)")
    p.set_defaults(run=run_evaluate)
    return p


def _model_source(args):
    """Probabilities and labels of every record of ``--lmdb`` (with its labels) or ``--hdf5`` from the model
    folder, each once; (scores, labels, info, model). Files are checked and counted before the net is built."""
    from softmax_multilabel_layer.evaluation import sources
    if args.root_folder:
        raise MultilabelLossError("--root-folder goes with --list, not with --lmdb or --hdf5")
    if args.lmdb:
        count = sources.lmdb_count(args.lmdb, "--lmdb")
        label_source = args.label_source or os.path.join(os.path.dirname(os.path.normpath(args.lmdb)),
                                                         sources.LABELS_LMDB)
        if not args.label_source and not os.path.isdir(label_source):
            raise MultilabelLossError("--lmdb %s: give its labels with --label-source (an LMDB of label rows, or an "
                                      "HDF5 file or list with a label dataset); there is no %s beside it"
                                      % (args.lmdb, label_source))
        labels = sources.labels_from(label_source, "--label-source")
        where, source = "--label-source %s" % label_source, args.lmdb
    else:
        files = sources.hdf5_files(args.hdf5, "--hdf5")
        count = sum(n for _, n in sources.hdf5_rows(files, "data", "--hdf5"))
        labels = sources.hdf5_labels(files, "--hdf5")
        where, source = "--hdf5 %s" % args.hdf5, args.hdf5
    if len(labels) != count:
        raise MultilabelLossError("%s holds %d label rows but %s holds %d samples" % (where, len(labels), source,
                                                                                       count))
    model = Model.load(args.model, args.engine)
    y = M.check_labels(where, labels.reshape(len(labels), -1))
    if y.shape[1] != len(model.class_names):
        raise MultilabelLossError("%s: label rows of %d classes, but the model has %d class names"
                                  % (where, y.shape[1], len(model.class_names)))
    step = 64
    batches = (sources.lmdb_images(args.lmdb, step) if args.lmdb else
               sources.hdf5_data(files, step, model.input.get("kind", "image") == "image"))
    s = np.empty(y.shape, np.float64)
    done = 0
    for batch in batches:
        s[done:done + len(batch)] = model.predict_proba(batch, batch_size=step)
        done += len(batch)
        progress("evaluate %s" % args.model, done, count)
    info = {"model": args.model, ("lmdb" if args.lmdb else "hdf5"): source, "engine": model.engine,
            "source_samples": count, "activation": model.spec.get("activation", "none")}
    if args.lmdb:
        info["label_source"] = label_source
    return s, y, info, model


def _model_list(args):
    """Probabilities and labels of every image of ``--list`` (or ``--lmdb`` / ``--hdf5``) from the model folder;
    (scores, labels, info, model)."""
    import tempfile

    from softmax_multilabel_layer.data.image_data import check_files_exist, parse_image_list
    given = [option for option in ("list", "lmdb", "hdf5") if getattr(args, option)]
    if not given:
        raise MultilabelLossError("a model folder is evaluated on a data set: give --list FILE (path, then labels), "
                                  "--lmdb IMAGES_LMDB or --hdf5 SOURCE")
    if len(given) > 1:
        raise MultilabelLossError("give one of --list, --lmdb, --hdf5, not %s" % " and ".join("--" + g for g in given))
    if args.label_source and not args.lmdb:
        raise MultilabelLossError("--label-source goes with --lmdb")
    for option in ("net", "weights", "snapshots", "scores", "labels", "iters"):
        if getattr(args, option) is not None:
            raise MultilabelLossError("--%s does not go with a model folder (it runs over the whole --%s once)"
                                      % (option, given[0]))
    if not args.list:
        return _model_source(args)
    if not os.path.isfile(args.list):
        raise MultilabelLossError("--list %s does not exist" % args.list)
    model = Model.load(args.model, args.engine)
    names = model.class_names
    with tempfile.TemporaryDirectory() as tmp:             # the list may name classes: parse with the model's names
        names_file = os.path.join(tmp, "class_names.txt")
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        images = parse_image_list(args.list, len(names), names_file, args.root_folder, owner="--list")
    check_files_exist(images, "--list", args.root_folder)
    y = np.zeros((len(images.paths), len(names)), bool)
    for i, labels in enumerate(images.labels):
        y[i, labels] = True
    s = np.empty(y.shape, np.float64)
    step = 64
    for start in range(0, len(images.paths), step):
        s[start:start + step] = model.predict_proba(images.paths[start:start + step], batch_size=step)
        progress("evaluate %s" % args.model, min(start + step, len(y)), len(y))
    info = {"model": args.model, "list": args.list, "root_folder": args.root_folder, "engine": model.engine,
            "list_samples": len(images.paths), "activation": model.spec.get("activation", "none")}
    return s, y, info, model


OUTPUTS = {"json": "--json", "per_class": "--per-class", "plot": "--plot", "thresholds_out": "--thresholds-out"}


def run_evaluate(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    for option, flag in OUTPUTS.items():          # before any work: a bad path fails now, not after the run
        if getattr(args, option):
            check_output(flag, getattr(args, option))
    activation = {"softmax": "Softmax", "sigmoid": "Sigmoid", "none": None}.get(args.activation, "auto")
    history, info = [], {}
    folder_model = None
    if args.model is None and (args.list or args.lmdb or args.hdf5 or args.label_source or args.calibrate
                               or args.engine):
        raise MultilabelLossError("--list, --lmdb, --hdf5, --label-source, --calibrate and --engine go with a model "
                                  "folder: evaluate MODEL/ --list FILE")
    if args.rule is None and args.model is None:
        args.rule = "top-k:1"
    rule = parse_rule(args.rule) if args.rule and args.rule != "thresholds" else None
    if args.model is not None:
        s, y, info, folder_model = _model_list(args)
        rule = folder_model.decision_rule(args.rule)
        if args.list:
            stdout.write("%s: %d samples (every image of the list, once)\n" % (args.list, info["list_samples"]))
        else:
            stdout.write("%s: %d samples (every record, once)\n" % (args.lmdb or args.hdf5, info["source_samples"]))
    elif args.scores or args.labels:
        if not (args.scores and args.labels) or args.net or args.snapshots:
            raise MultilabelLossError("give --scores and --labels together, without --net / --snapshots")
        y = M.check_labels("--labels %s" % args.labels, _load_npy(args.labels, "--labels"))
        s = M.check_scores("--scores %s" % args.scores, _load_npy(args.scores, "--scores"), y.shape)
        s = probabilities(s, activation if activation != "auto" else None)
        info = {"scores": args.scores, "labels": args.labels}
    elif args.net and args.snapshots:
        models = sorted((os.path.join(args.snapshots, f) for f in os.listdir(args.snapshots)
                         if f.endswith(".caffemodel")), key=lambda p: (snapshot_iteration(p), p))
        if not models:
            raise MultilabelLossError("no .caffemodel in %s" % args.snapshots)
        rows = []
        for i, model in enumerate(models):
            s, y, info = collect(args.net, model, args.iters, args.scores_blob, args.labels_blob, activation,
                                 label="snapshot %d/%d %s" % (i + 1, len(models), os.path.basename(model)))
            mean_ap = M.average_precision(y, s)
            history.append((snapshot_iteration(model), mean_ap))
            rows.append({"iteration": snapshot_iteration(model), "caffemodel": model, "mAP": mean_ap})
        stdout.write("%-10s %-8s %s\n" % ("iteration", "mAP", "caffemodel"))
        for r in rows:
            stdout.write("%-10d %.6f %s\n" % (r["iteration"], r["mAP"], r["caffemodel"]))
        stdout.write("\nlast snapshot:\n")
        info["snapshots"] = rows
    elif args.net:
        if not args.weights:
            raise MultilabelLossError("--net needs --weights W.caffemodel (or --snapshots DIR)")
        s, y, info = collect(args.net, args.weights, args.iters, args.scores_blob, args.labels_blob, activation)
    else:
        raise MultilabelLossError("give --net (with --weights or --snapshots) or --scores and --labels")
    names = folder_model.class_names if folder_model is not None and not args.class_names \
        else class_names(args.class_names, y.shape[1])
    if rule is None:
        raise MultilabelLossError("--rule thresholds means a model folder's calibrated thresholds; without MODEL/ "
                                  "give thresholds:FILE.json")
    rule = check_rule(rule, s, "--rule")
    summary = report(y, s, rule)
    stdout.write(format_table(summary) + "\n")
    if args.per_class or args.thresholds_out:
        rows, thresholds, f1 = per_class_rows(y, s, names)
        if args.per_class:
            write_per_class(args.per_class, rows)
        if args.thresholds_out:
            save_thresholds(args.thresholds_out, thresholds, f1, names)
    if args.plot:
        plot(args.plot, y, s, names, history)
    if args.json:
        with _replacing(args.json) as f:
            json.dump(json_ready(dict(summary, **info)), f, indent=1, allow_nan=False)
            f.write("\n")
    for option in OUTPUTS:
        if getattr(args, option):
            stdout.write("wrote %s\n" % getattr(args, option))
    if args.calibrate:
        thresholds, f1 = calibrate_thresholds(y, s)
        data = {"list": os.path.abspath(args.list)} if args.list else \
            {("lmdb" if args.lmdb else "hdf5"): os.path.abspath(args.lmdb or args.hdf5)}
        set_thresholds(args.model, thresholds, dict(data, root_folder=args.root_folder, samples=int(len(y)),
                                                    f1=[float(v) for v in f1], mean_f1=float(np.mean(f1))))
        stdout.write("wrote per-class thresholds (mean F1 %.4f on %s) into %s; predict and evaluate MODEL/ now use "
                     "them\n" % (float(np.mean(f1)), args.list or args.lmdb or args.hdf5,
                                 os.path.join(args.model, "model.json")))
    return 0


__all__ = ["add_evaluate_parser", "check_output", "figure", "format_table", "json_ready", "per_class_rows", "plot",
           "pr_staircase", "run_evaluate", "write_per_class"]
