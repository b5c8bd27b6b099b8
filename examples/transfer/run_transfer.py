"""Noisy-tag pretraining with softmax 1/M against sigmoid losses, judged by transfer.

    .venv/bin/python examples/transfer/run_transfer.py [--out output/transfer] [--seeds 1 2 3]

A miniature of the loss comparison in Mahajan et al. (ECCV 2018): softmax with 1/M
targets against per-hashtag sigmoid, judged by transfer:

1. data (transfer_data.py): digit canvases of the digits demo with 148 hashtag-like
   tags, clean and noisy (each true tag dropped with p 0.4, about 0.3 wrong tags added
   per image); scans are split first, so the probe's scans are never seen in pretraining;
2. pretraining: the same CNN, solver and budget for every loss, trained with
   ``.venv/bin/caffe train`` on the clean or the noisy tags. The learning rate is chosen
   per (loss, condition) from the same small grid, with the first seed, by tag mAP on
   validation canvases from the pretraining pool (tagged like the training set: noisy
   in the noisy condition); the other seeds then run at that rate;
3. transfer: each frozen net's penultimate features (fc1, 128-d) on held-out scans, one
   digit per canvas; a linear probe (scikit-learn LogisticRegression on standardised
   features) learns single-digit classification from 10 or 50 labelled scans per class;
   its test accuracy is the yardstick. Also the tag mAP of each net (clean tags, canvases
   of held-out scans). Baselines: the probe on raw pixels and on a randomly initialised CNN;
4. report: <out>/results.json, results.md, transfer.png.

Knobs that trade time for fidelity: --max-iter (pretraining length), --lrs (grid size),
--seeds, --probe-draws (repeated 10-shot subsets), --test-positions, --jobs. --reuse keeps
finished runs in --out; --fixed-lr LOSS=RATE skips the search (examples/transfer/README.md).
"""
import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from softmax_multilabel_layer.evaluation import metrics
from softmax_multilabel_layer.tools.train import caffe_binary, parse_log, train
from softmax_multilabel_layer.tools.train import forward_in_batches as forward
from softmax_multilabel_layer.tools.train import run_statistics as stats

import transfer_data
import transfer_nets
from transfer_nets import REPO

CONDITIONS = ("clean", "noisy")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "output", "transfer"))
    p.add_argument("--losses", nargs="+", default=None,
                   help="default: softmax sigmoid focal, and asl when the package has it")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="pretraining random_seed values")
    p.add_argument("--tune", action="store_true", help="only search the learning rates (--tune-seeds, "
                   "--tune-iter iterations) and write them to --tuned")
    p.add_argument("--tuned", default=os.path.join(REPO, "examples", "transfer", "tuned.json"),
                   help="the learning rates chosen by --tune (read by a normal run, written by --tune)")
    p.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1],
                   help="--tune: the starting grid, the same for every loss; extended while the best is at an edge")
    p.add_argument("--max-grid", type=int, default=6, help="--tune: most rates per loss and condition")
    p.add_argument("--tune-iter", type=int, default=None, help="--tune: iterations of each grid run (default: "
                   "the last --checkpoints, so the grid's runs are the final runs of its seeds, kept by --reuse)")
    p.add_argument("--tune-seeds", type=int, nargs="+", default=[1, 2], help="--tune: every rate is run with each "
                   "of these seeds and scored by its worst seed's validation mAP")
    p.add_argument("--fixed-lr", nargs="+", default=[], metavar="LOSS=RATE",
                   help="use these rates instead of the tuned ones")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[500, 1000, 2000],
                   help="iterations at which each run is evaluated (snapshots of one run); it ends at the last")
    p.add_argument("--prior", choices=("mean", "none"), default="mean",
                   help="sigmoid family's initial fc_out bias: the prior bias of the mean tag frequency, or zero")
    p.add_argument("--shots", type=int, nargs="+", default=[10, 50], help="labelled scans per class for the probe")
    p.add_argument("--probe-draws", type=int, default=5, help="random subsets averaged for shot counts "
                   "below the largest")
    p.add_argument("--probe-c", type=float, default=1.0, help="inverse L2 strength of the probe")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=9600)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-tag-test", type=int, default=2000)
    p.add_argument("--heldout-fraction", type=float, default=0.5, help="fraction of the scans kept from "
                   "pretraining for the probe and the tag test")
    p.add_argument("--test-positions", type=int, default=4, help="canvases per probe-test scan")
    p.add_argument("--drop", type=float, default=0.4, help="noisy condition: P(a true tag is dropped)")
    p.add_argument("--add-per-image", type=float, default=0.3, help="noisy condition: mean wrong tags added")
    p.add_argument("--reuse", action="store_true", help="keep runs already completed in --out with the same "
                   "prototxts (evaluate them again, train only the missing ones)")
    p.add_argument("--no-train", action="store_true", help="like --reuse, but report only the runs already finished "
                   "in --out (e.g. more seeds for some losses than for others), train none")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", os.cpu_count() or 1)),
                   help="parallel caffe runs, one core each (default: $JOBS, else the core count)")
    args = p.parse_args(argv)
    losses = transfer_nets.available_losses()
    if args.losses is None:
        args.losses = list(losses)
    try:
        args.fixed_lr = {k: [float(v)] for k, v in (item.split("=") for item in args.fixed_lr)}
    except ValueError:
        p.error("--fixed-lr: expected LOSS=RATE items, got %s" % args.fixed_lr)
    unknown = [name for name in list(args.losses) + list(args.fixed_lr) if name not in losses]
    if unknown:
        p.error("--losses: unknown or unavailable %s; available here: %s" % (unknown, ", ".join(losses)))
    return args


# ---------------------------------------------------------------- evaluation

def tag_scores(logits, kind):
    """The score each loss trains: softmax over tags, or the logits (same ranking as sigmoid)."""
    if kind == "softmax":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return logits


def probe_accuracy(train_x, train_y, test_x, test_y, subsets, c=1.0):
    """Mean test accuracy of a linear probe (standardise + LogisticRegression) over row subsets."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):      # one BLAS thread: the same accuracy on every rerun
        accs = [_fit_score(train_x[rows], train_y[rows], test_x, test_y, c) for rows in subsets]
    return float(np.mean(accs))


def _fit_score(train_x, train_y, test_x, test_y, c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def probe_all(features, arrays, subsets, c):
    """{shots (str): accuracy} for features = {"probe_train": X, "probe_test": X}."""
    y_tr, y_te = arrays["probe_train"]["label"], arrays["probe_test"]["label"]
    return {str(k): probe_accuracy(features["probe_train"], y_tr, features["probe_test"], y_te, rows, c)
            for k, rows in subsets.items()}


def evaluate_net(net, kind, arrays, condition, subsets, c):
    """tag mAP (clean tags, held-out canvases), validation mAP (the condition's tags) and probe accuracy."""
    scores, feats = {}, {}
    for name in ("val", "tag_test", "probe_train", "probe_test"):
        out = forward(net, arrays[name]["data"], (transfer_nets.FEATURES, transfer_nets.SCORES))
        scores[name], feats[name] = out[transfer_nets.SCORES], out[transfer_nets.FEATURES]
    finite = all(np.isfinite(a).all() for a in list(scores.values()) + list(feats.values()))
    if not finite:       # a diverged run: score it as it is, with non-numbers read as 0
        for d in (scores, feats):
            for name in d:
                d[name] = np.nan_to_num(d[name], nan=0.0, posinf=0.0, neginf=0.0)
    return {
        "diverged": not finite,
        "tag_map": metrics.average_precision(arrays["tag_test"]["clean"], tag_scores(scores["tag_test"], kind)),
        "val_map": metrics.average_precision(arrays["val"][condition], tag_scores(scores["val"], kind)),
        "probe_accuracy": probe_all(feats, arrays, subsets, c),
        "dead_features": int((feats["probe_test"].max(axis=0) <= 0).sum()),
    }


def log_seconds(text):
    """Seconds from the first to the last time-stamped glog line of a Caffe log (None if none)."""
    import datetime
    stamps = re.findall(r"^[IWEF]\d{8} (\d\d:\d\d:\d\d\.\d+)", text, re.M)
    if not stamps:
        return None
    first, last = (datetime.datetime.strptime(t, "%H:%M:%S.%f") for t in (stamps[0], stamps[-1]))
    return (last - first).total_seconds() % 86400


# ---------------------------------------------------------------- report

def summarize(runs, losses, conditions, shots):
    """{loss: {condition: {"tag_map": stats, "probe_accuracy": {shots: stats}, "base_lr": lr}}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for loss in losses:
        for cond in conditions:
            rs = [r for r in runs if r["loss"] == loss and r["condition"] == cond]
            if not rs:
                continue
            out.setdefault(loss, {})[cond] = {
                "base_lr": rs[0]["base_lr"], "seeds": [r["seed"] for r in rs],
                "tag_map": stats([r["tag_map"] for r in rs]),
                "probe_accuracy": {str(k): stats([r["probe_accuracy"][str(k)] for r in rs]) for k in shots},
                "curve": {it: {"tag_map": stats([r["curve"][it]["tag_map"] for r in rs]),
                               "probe_accuracy": {str(k): stats([r["curve"][it]["probe_accuracy"][str(k)]
                                                                 for r in rs]) for k in shots}}
                          for it in rs[0].get("curve", {})}}
    return out


def verdict(summary, comparisons, conditions, shots, runs, family=transfer_nets.SIGMOID_FAMILY):
    """Per condition: softmax against the best sigmoid-family loss, with the paired differences of every
    yardstick and whether each exceeds the seed spread (:func:`compare`).

    The best is the one with the highest mean probe accuracy at the most shots, at the end of the runs, over
    the seeds every sigmoid-family loss of the condition has (so a loss run with more seeds is not judged on
    other seeds than its rivals).
    """
    out = {}
    top = "probe_%d" % max(shots)
    for cond in conditions:
        rivals = [x for x in family if cond in summary.get(x, {})]
        if "softmax" not in summary or not rivals:
            continue
        common = set.intersection(*({r["seed"] for r in runs if r["loss"] == x and r["condition"] == cond}
                                    for x in rivals))

        def score(x, cond=cond, common=common):
            return float(np.mean([r["probe_accuracy"][str(max(shots))] for r in runs
                                  if r["loss"] == x and r["condition"] == cond and r["seed"] in common]))
        best = max(rivals, key=score)
        rows = {c["metric"]: c for c in comparisons if c["condition"] == cond and c["versus"] == best}
        out[cond] = {"best_sigmoid_family": best, "chosen_on_seeds": sorted(common), "by_metric": rows,
                     "softmax_better": all(r["exceeds_spread"] and r["mean_difference"] > 0 for r in rows.values()),
                     "softmax_better_at_%s" % top: bool(rows.get(top, {}).get("exceeds_spread"))
                     and rows[top]["mean_difference"] > 0}
    return out


def compare(runs, reference, conditions, shots):
    """Paired (same seed, same data and initial weights) differences reference - other loss.

    "exceeds_spread": every paired difference has the same sign and the mean difference
    is larger than the seed std of both losses.
    """
    out = []
    others = sorted({r["loss"] for r in runs} - {reference})
    for cond in conditions:
        for other in others:
            for metric, key in [("tag_map", None)] + [("probe_accuracy", str(k)) for k in shots]:
                def value(r, metric=metric, key=key):
                    return r[metric] if key is None else r[metric][key]
                a = {r["seed"]: value(r) for r in runs if r["loss"] == reference and r["condition"] == cond}
                b = {r["seed"]: value(r) for r in runs if r["loss"] == other and r["condition"] == cond}
                seeds = sorted(set(a) & set(b))
                if not seeds:
                    continue
                d, spread, exceeds = paired([a[s] for s in seeds], [b[s] for s in seeds])
                out.append({"condition": cond, "versus": other, "metric": metric if key is None else
                            "probe_%s" % key, "mean_difference": float(d.mean()),
                            "paired": [float(x) for x in d], "seed_std": spread, "exceeds_spread": exceeds})
    return out


def paired(a, b):
    """(a - b seed by seed, the larger seed std of a and b, whether the difference exceeds the seed spread: every
    paired difference of one sign and the mean difference larger than that std; never with one seed)."""
    d = np.subtract(a, b)
    spread = float(max(np.std(a, ddof=1), np.std(b, ddof=1))) if len(d) > 1 else 0.0
    return d, spread, bool(len(d) > 1 and (np.all(d > 0) or np.all(d < 0)) and abs(d.mean()) > spread)


def ordered(summary):
    """The losses of a summary in the experiment's order (JSON files keep keys sorted)."""
    return [x for x in transfer_nets.ORDER if x in summary] + sorted(set(summary) - set(transfer_nets.ORDER))


def _pm(s, digits=3):
    if s["n"] == 1:
        return "%.*f" % (digits, s["mean"])
    return "%.*f ± %.*f" % (digits, s["mean"], digits, s["std"])


def markdown_tables(results):
    shots = results["shots"]
    head = ["Pretraining loss", "lr", "tag mAP"] + ["probe acc, %d-shot" % k for k in shots]
    lines = []
    for cond in results["conditions"]:
        lines += ["", "**%s tags**" % cond, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for loss in ordered(results["summary"]):
            by_cond = results["summary"][loss]
            if cond in by_cond:
                s = by_cond[cond]
                lines.append("| %s | %g | %s | %s |" % (
                    transfer_nets.LOSS_NAMES[loss], s["base_lr"], _pm(s["tag_map"]),
                    " | ".join(_pm(s["probe_accuracy"][str(k)]) for k in shots)))
    lines += ["", "Baselines (no pretraining):", "", "| Features | " +
              " | ".join("probe acc, %d-shot" % k for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name, s in results["baseline_summary"].items():
        lines.append("| %s | %s |" % (name, " | ".join(_pm(s[str(k)]) for k in shots)))
    return "\n".join(lines).lstrip("\n")


def grid_seeds(tuning):
    """The grid's seeds ("seeds"; a grid of one seed before the worst-seed rule recorded "seed")."""
    return tuning.get("seeds", [tuning.get("seed")])


def lr_table(results):
    """The --tune grid (results["tuning"], from tuned.json): the worst seed's validation mAP by rate; the chosen
    rate in bold."""
    tuning = results.get("tuning")
    if not tuning:
        return "(rates given with --fixed-lr; no grid)"
    rows = tuning["grid"]
    lrs = sorted({r["base_lr"] for r in rows})
    head = ["loss", "tuned on"] + ["lr %g" % lr for lr in lrs] + ["chosen", "interior"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seeds = grid_seeds(tuning)
    marked = False
    for loss in [x for x in transfer_nets.ORDER if x in tuning["chosen"]]:
        for cond, lr in tuning["chosen"][loss].items():
            mine = [r for r in rows if r["loss"] == loss and r["condition"] == cond]
            val = {r["base_lr"]: r["val_map"] for r in worst_by_rate(mine)}
            short = {x for x in val if len({r["seed"] for r in mine if r["base_lr"] == x}) < len(seeds)}
            cells = [(("**%.3f**" if x == lr else "%.3f") % val[x] + ("†" if x in short else "")) if x in val
                     else "" for x in lrs]
            marked = marked or bool(short)
            lines.append("| %s | %s | %s | %g | %s |" % (loss, cond, " | ".join(cells), lr,
                                                        "yes" if tuning["interior"][loss][cond] else "**no**"))
    if marked:
        lines += ["", "† run with the first seed only: it scored below the worst seed of a rate run with every "
                  "seed, so it could not win and its other seeds were not run."]
    return "\n".join(lines)


def curve_table(results, metric, key=None):
    """Mean over seeds of one yardstick at every checkpoint, a row per (loss, condition)."""
    its = results["checkpoints"]
    head = ["loss", "tags"] + ["%d it" % it for it in its]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cond in results["conditions"]:
        for loss in ordered(results["summary"]):
            by_cond = results["summary"][loss]
            if cond not in by_cond:
                continue
            c = by_cond[cond]["curve"]
            cells = [_pm(c[str(it)][metric] if key is None else c[str(it)][metric][key]) for it in its]
            lines.append("| %s | %s | %s |" % (loss, cond, " | ".join(cells)))
    return "\n".join(lines)


def verdict_lines(results):
    """One sentence per condition: softmax 1/M against the best sigmoid-family loss, at the end of the runs."""
    out = []
    for cond, v in results.get("verdict", {}).items():
        rows = v["by_metric"]
        parts = ["%s %+.3f (%s)" % (m.replace("probe_", "probe ").replace("tag_map", "tag mAP"), r["mean_difference"],
                                     "one seed" if len(r["paired"]) < 2 else "beyond the seed spread"
                                     if r["exceeds_spread"] else "within the seed spread")
                 for m, r in sorted(rows.items())]
        if min(len(r["paired"]) for r in rows.values()) < 2:
            say = "fewer than two paired seeds: no seed spread, no verdict"
        elif v["softmax_better"]:
            say = "softmax 1/M beats it beyond the seed spread on every yardstick"
        elif all(r["exceeds_spread"] and r["mean_difference"] < 0 for r in rows.values()):
            say = "it beats softmax 1/M beyond the seed spread on every yardstick"
        else:
            say = "softmax 1/M does not beat it beyond the seed spread on every yardstick"
        best = transfer_nets.LOSS_NAMES[v["best_sigmoid_family"]].replace(" (ours)", "")
        out.append("- **%s tags**: best sigmoid-family loss %s; softmax − %s: %s. %s." % (
            cond, best, best, "; ".join(parts), say[0].upper() + say[1:]))
    return "\n".join(out)


MUST = 0.5       # the floor: every pretrained loss's probe accuracy at the most shots, on clean tags


def must_line(results, condition="clean", floor=MUST):
    """Whether every loss's probe accuracy at the most shots is at least ``floor`` on every seed of
    ``condition`` at the end of the runs; the runs below it, or the lowest run."""
    top = str(max(results["shots"]))
    runs = [r for r in results["runs"] if r["condition"] == condition]
    if not runs:
        return ""
    below = [r for r in runs if r["probe_accuracy"][top] < floor]
    head = "**Must** (%s-shot probe accuracy at least %g on %s tags, every loss, every seed): " % (
        top, floor, condition)
    if below:
        return head + "**not met** by %s." % "; ".join(
            "%s seed %d (%.3f)" % (r["loss"], r["seed"], r["probe_accuracy"][top])
            for r in sorted(below, key=lambda r: (transfer_nets.ORDER.index(r["loss"])
                                                  if r["loss"] in transfer_nets.ORDER else 99, r["seed"])))
    low = min(runs, key=lambda r: r["probe_accuracy"][top])
    return head + "met by all %d runs; the lowest is %s seed %d (%.3f)." % (
        len(runs), low["loss"], low["seed"], low["probe_accuracy"][top])


def comparison_lines(results):
    lines = []
    for c in results["comparisons"]:
        lines.append("- %s, %s: softmax − %s = %+.3f (per seed %s; seed std %.3f)%s" % (
            c["condition"], c["metric"], c["versus"], c["mean_difference"],
            ", ".join("%+.3f" % x for x in c["paired"]), c["seed_std"],
            " — exceeds the seed spread" if c["exceeds_spread"] else " — within the seed spread"))
    return "\n".join(lines)


def wall_time_line(results):
    every = results["runs"]
    reused = sum(1 for r in every if r.get("reused"))
    trained = sum(r.get("train_seconds") or 0.0 for r in every)
    return ("Wall time of this invocation %.0f s (load average %s at the start, %s at the end; %s; %s); "
            "%d of %d pretraining runs reused from an earlier invocation (--reuse); "
            "caffe train time of all %d runs, from their logs: %.0f s summed."
            % (results["seconds"]["total"], results["load_average"]["start"], results["load_average"]["end"],
               results.get("machine", "?"), results.get("date", "?"), reused, len(every), len(every), trained))


def plot(results, path):
    """Budget curves: each yardstick against iterations (mean over seeds, bars = seed std), a row per condition."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("probe_accuracy", str(k), "probe accuracy, %d-shot" % k) for k in results["shots"]] + \
        [("tag_map", None, "tag mAP (clean tags, held-out scans)")]
    conds = results["conditions"]
    its = results["checkpoints"]
    fig, axes = plt.subplots(len(conds), len(panels), figsize=(4.2 * len(panels), 3.4 * len(conds)), squeeze=False)
    for row, cond in zip(axes, conds, strict=True):
        for ax, (metric, key, title) in zip(row, panels, strict=True):
            for loss in ordered(results["summary"]):
                by_cond = results["summary"][loss]
                if cond not in by_cond:
                    continue
                ss = [by_cond[cond]["curve"][str(it)][metric] if key is None else
                      by_cond[cond]["curve"][str(it)][metric][key] for it in its]
                ax.errorbar(its, [s["mean"] for s in ss], yerr=[s["std"] for s in ss], marker="o", ms=3,
                            capsize=2, label="%s (lr %g)" % (loss, by_cond[cond]["base_lr"]))
            if key is not None:
                for name, s in results["baseline_summary"].items():
                    ax.axhline(s[key]["mean"], ls="--", lw=1, color="gray")
                    ax.text(its[-1], s[key]["mean"], name, fontsize=7, va="bottom", ha="right")
            ax.set_xscale("log", base=2)
            ax.set_xticks(its)
            ax.set_xticklabels([str(it) for it in its])
            ax.set_ylim(0.0, 1.0)
            ax.set_xlabel("pretraining iterations (batch 64)")
            ax.set_title("%s tags: %s" % (cond, title), fontsize=9)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(results, out):
    write_json(os.path.join(out, "results.json"), results)
    plot_path = plot(results, os.path.join(out, "budget_curves.png"))
    d = results["data"]
    md = ["# Transfer after noisy-tag pretraining: softmax 1/M vs sigmoid losses", "",
          "`%s`" % results["command"], "",
          "Pretraining: %d canvases, %d tags; noisy condition: %.2f of true tags dropped, "
          "%.2f wrong tags added per image (measured). Probe: single held-out scans, %d test canvases. "
          "Mean ± sample std over pretraining seeds %s, at each loss's chosen learning rate."
          % (d["sizes"]["pretrain"], d["tags"], d["noise"]["measured_drop"],
             d["noise"]["measured_added_per_image"], d["sizes"]["probe_test"],
             ", ".join(map(str, results["seeds"]))), "",
          markdown_tables(results), "",
          "Verdict at %d iterations:" % results["checkpoints"][-1], "", verdict_lines(results), "",
          must_line(results), "",
          "Differences (paired by seed):", "", comparison_lines(results), "",
          "Budget curves, probe accuracy %d-shot:" % max(results["shots"]), "",
          curve_table(results, "probe_accuracy", str(max(results["shots"]))), "",
          "Budget curves, tag mAP:", "", curve_table(results, "tag_map"), "",
          "Learning-rate grid (validation mAP; --tune):", "", lr_table(results), "",
          "Plot: %s" % os.path.basename(plot_path), "",
          wall_time_line(results)]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return md


def assemble_results(args, data, runs, tuning, selected, baselines, command, seconds, load_average):
    """Everything results.json holds; ``runs`` are the runs at the chosen learning rates."""
    baseline_summary = {}
    for name in dict.fromkeys(b["features"] for b in baselines):
        bs = [b for b in baselines if b["features"] == name]
        baseline_summary[name] = {str(k): stats([b["probe_accuracy"][str(k)] for b in bs]) for k in args.shots}
    losses = transfer_nets.available_losses()
    summary = summarize(runs, args.losses, args.conditions, args.shots)
    comparisons = compare(runs, "softmax", args.conditions, args.shots) if "softmax" in args.losses else []
    return {
        "seeds": list(args.seeds), "conditions": list(args.conditions), "shots": list(args.shots),
        "runs": runs,
        "losses": {name: {"layer": losses[name][0], "options": losses[name][1],
                          "description": transfer_nets.LOSS_NAMES[name]} for name in args.losses},
        "selected_lr": selected, "tuning": tuning,
        "summary": summary,
        "comparisons": comparisons,
        "verdict": verdict(summary, comparisons, args.conditions, args.shots, runs),
        "baselines": baselines, "baseline_summary": baseline_summary,
        "data": data,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "command": command, "seconds": seconds, "load_average": load_average, "cpu_count": os.cpu_count(),
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        "checkpoints": sorted({int(it) for r in runs for it in r.get("curve", {})}),
    }


# ---------------------------------------------------------------- learning-rate grid

def ladder(rate, up):
    """The next rate on the 1-3-10 ladder above (``up``) or below ``rate``: 0.01 <-> 0.03 <-> 0.1."""
    exponent = np.floor(np.log10(rate) + 1e-9)
    mantissa = rate / 10 ** exponent
    if up:
        nxt = 3 * 10 ** exponent if mantissa < 2 else 10 ** (exponent + 1)
    else:
        nxt = 10 ** (exponent - 1) * 3 if mantissa < 2 else 10 ** exponent
    return float("%.3g" % nxt)


def worst_by_rate(rows):
    """One row per rate (sorted): the row of its worst seed by validation mAP (a rate is as good as its worst
    seed: one collapse among the grid's seeds rules a rate out)."""
    out: dict[float, dict[str, Any]] = {}
    for r in rows:
        if r["base_lr"] not in out or r["val_map"] < out[r["base_lr"]]["val_map"]:
            out[r["base_lr"]] = r
    return [out[lr] for lr in sorted(out)]


def next_seed_run(rows, seeds):
    """(rate, seed) of the next grid run the worst-seed rule needs for one loss, or None when it is decided.

    A rate scores its worst seed's validation mAP. Rates are run with the first seed; a rate then gets its
    further seeds, best first, only while its worst seed so far is at least that of every rate run with all the
    seeds (a rate already below cannot win, so its other seeds are not run). The choice, ties included, is the
    same as with every seed run for every rate, at a fraction of the runs.
    """
    done: dict[float, dict[int, float]] = {}
    for r in rows:
        done.setdefault(r["base_lr"], {})[r["seed"]] = r["val_map"]
    complete = [min(v.values()) for v in done.values() if all(s in v for s in seeds)]
    bar = max(complete, default=-np.inf)
    open_rates = [(min(v.values()), lr) for lr, v in done.items() if not all(s in v for s in seeds)
                  and min(v.values()) >= bar]
    if not open_rates:
        return None
    score, lr = max(open_rates, key=lambda t: (t[0], -t[1]))
    return lr, next(s for s in seeds if s not in done[lr])


def choose(rows, max_grid):
    """(chosen row, the rate to try next or None) for one loss's grid rows (dicts with base_lr, val_map).

    The best validation mAP is chosen (ties: the smaller rate). When it sits at an edge of the grid,
    the next rate outward on the 1-3-10 ladder is proposed, until the grid has ``max_grid`` rates.
    """
    rows = sorted(rows, key=lambda r: r["base_lr"])
    best = max(rows, key=lambda r: (r["val_map"], -r["base_lr"]))
    if len(rows) >= max_grid:
        return best, None
    if best is rows[0]:
        return best, ladder(best["base_lr"], up=False)
    if best is rows[-1]:
        return best, ladder(best["base_lr"], up=True)
    return best, None


def tuned_rates(path, losses, conditions):
    """({loss: {condition: rate}}, {loss: {condition: the condition the rate was tuned on}}) from a --tune file.

    A condition the file was not tuned on takes the rate tuned on the file's first condition.
    """
    if not os.path.exists(path):
        raise SystemExit("run_transfer.py: no tuned rates in %s; run with --tune first, or give --fixed-lr" % path)
    return tuned_rates_from(read_json(path), losses, conditions, path)


def tuned_rates_from(tuned, losses, conditions, path="tuned.json"):
    """:func:`tuned_rates` of a --tune file's contents."""
    missing = [loss for loss in losses if not tuned["chosen"].get(loss)]
    if missing:
        raise SystemExit("run_transfer.py: %s has no tuned rate for %s; run with --tune, or give --fixed-lr"
                         % (path, ", ".join(missing)))
    rates: dict[str, dict[str, float]] = {}
    source: dict[str, dict[str, str]] = {}
    for loss in losses:
        chosen = tuned["chosen"][loss]
        first = next(iter(chosen))
        for c in conditions:
            rates.setdefault(loss, {})[c] = chosen.get(c, chosen[first])
            source.setdefault(loss, {})[c] = c if c in chosen else first
    return rates, source


SESSION_KEYS = ("command", "seconds", "load_average", "date", "machine")


def _pairs(tuning):
    return {(loss, c) for loss, by_cond in tuning["chosen"].items() for c in by_cond}


def merge_tuning(old, new, path="tuned.json"):
    """``new`` (a --tune of some losses and conditions) merged into ``old`` (the file's earlier grids).

    The (loss, condition) pairs ``new`` tuned replace theirs in ``old``; the others are kept, and so are the
    command, time, load and machine of the --tune that made them (``sessions``). Both grids must follow one
    rule (same ``tune_iter`` and ``seeds``), or the rates would not be chosen alike: then it refuses.
    """
    def session(t, pairs):
        return dict({k: t[k] for k in SESSION_KEYS}, pairs=sorted([loss, c] for loss, c in pairs))

    fresh = _pairs(new)
    kept = set() if old is None else _pairs(old) - fresh
    if not kept:
        return dict(new, sessions=[session(new, fresh)])
    every = " ".join(sorted({c for _, c in kept | fresh}))
    for key in ("tune_iter", "seeds"):
        if old.get(key) != new[key]:
            raise SystemExit("run_transfer.py: %s was tuned with %s %s, this grid with %s: tune every loss and "
                             "condition with one rule (--tune --conditions %s)" % (path, key, old.get(key), new[key],
                                                                                  every))
    sessions = [dict(s, pairs=[p for p in s["pairs"] if tuple(p) in kept])
                for s in old.get("sessions", [session(old, kept)])]
    merged = dict(new, sessions=[s for s in sessions if s["pairs"]] + [session(new, fresh)])
    for key in ("chosen", "interior"):
        merged[key] = {}
        for loss, c in sorted(kept) + sorted(fresh):
            merged[key].setdefault(loss, {})[c] = (new if (loss, c) in fresh else old)[key][loss][c]
    merged["grid"] = [r for r in old["grid"] if (r["loss"], r["condition"]) in kept] + new["grid"]
    merged["prior"] = dict(old.get("prior", {}), **new.get("prior", {}))
    return merged


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- main

def main(argv=None):
    os.environ.setdefault("GLOG_minloglevel", "2")      # before the first import of caffe
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = parse_args(argv)
    t0 = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    lock = threading.Lock()

    def say(text):
        with lock:
            print(text, flush=True)

    say("== 1/4 data (seed %d), load average %s" % (args.data_seed, load_start))
    data = transfer_data.make_data(os.path.join(out, "data"), args.n_train, args.n_val, args.n_tag_test,
                                   args.data_seed, args.heldout_fraction, max(args.shots), args.test_positions,
                                   args.drop, args.add_per_image)
    arrays = data.pop("arrays")
    say("   %d tags; pretraining %d canvases from %d scans; held-out %d scans -> probe train %d, "
        "probe test %d canvases; noisy: %.3f of true tags dropped, %.3f wrong tags added per image"
        % (data["tags"], args.n_train, data["scans"]["pretraining_pool"], data["scans"]["heldout_pool"],
           data["sizes"]["probe_train"], data["sizes"]["probe_test"], data["noise"]["measured_drop"],
           data["noise"]["measured_added_per_image"]))
    with open(data["h5_file"], "rb") as h5:       # --reuse: a run is reused only on the same data
        data_digest = hashlib.sha256(h5.read()).hexdigest()
    rng = np.random.default_rng([args.data_seed, 20])
    subsets = {k: transfer_data.shot_subsets(max(args.shots), k, args.probe_draws, rng) for k in args.shots}
    losses = transfer_nets.available_losses()
    # the sigmoid family's prior: the mean tag frequency of the condition's training tags
    priors = {c: data["noise"]["tags_per_image"][c] / data["tags"] for c in args.conditions}
    data["prior"] = {c: (priors[c] if args.prior == "mean" else None) for c in args.conditions}
    deploy = os.path.join(out, "deploy.prototxt")
    with open(deploy, "w") as f:
        f.write(transfer_nets.deploy_prototxt(data["tags"]))

    import caffe
    caffe.set_mode_cpu()
    # a grid at the final budget snapshots like the final runs, so its runs are theirs (--reuse keeps them)
    checkpoints = sorted(args.checkpoints)
    if args.tune and args.tune_iter not in (None, checkpoints[-1]):
        checkpoints = [args.tune_iter]
    max_iter = checkpoints[-1]
    every = int(np.gcd.reduce(checkpoints))

    def train_one(run):
        run_dir = run["run_dir"]
        os.makedirs(run_dir, exist_ok=True)
        net_path = os.path.join(run_dir, "train.prototxt")
        solver = os.path.join(run_dir, "solver.prototxt")
        prior = data["prior"][run["condition"]] if run["loss"] in transfer_nets.SIGMOID_FAMILY else None
        files = {net_path: "# data: %s sha256 %s\n" % (data["h5_file"], data_digest) +
                 transfer_nets.train_prototxt(run["loss"], data["tags"], data["list_file"], run["condition"],
                                              prior),
                 solver: transfer_nets.solver_prototxt(net_path, os.path.join(run_dir, "snap"), run["base_lr"],
                                                       max_iter, run["seed"], every)}
        if (args.reuse or args.no_train) and finished(run_dir, files):
            with open(os.path.join(run_dir, "train.log")) as f:
                run["train_seconds"], run["reused"] = log_seconds(f.read()), True
            return run
        if args.no_train:
            run["missing"] = True
            return run
        for path, text in files.items():
            with open(path, "w") as f:
                f.write(text)
        say("  [%-24s] caffe train, %d iterations, seed %d ..." % (run["name"], max_iter, run["seed"]))
        start = time.time()
        rc = train(solver, os.path.join(run_dir, "train.log"), progress_every=max_iter,
                   on_progress=lambda t: None, cwd=REPO)
        run["train_seconds"] = time.time() - start
        if rc != 0:
            raise RuntimeError("%s: caffe exited with %d, see %s" % (run["name"], rc,
                                                                   os.path.join(run_dir, "train.log")))
        return run

    def read(path):
        with open(path) as f:
            return f.read()

    def finished(run_dir, files):
        """True if run_dir holds a completed run of exactly these prototxts (they name the data's digest)."""
        for path, text in files.items():
            if not os.path.exists(path) or read(path) != text:
                return False
        log = os.path.join(run_dir, "train.log")
        return (all(os.path.exists(os.path.join(run_dir, "snap_iter_%d.caffemodel" % it)) for it in checkpoints)
                and os.path.exists(log) and "Optimization Done" in read(log))

    def finish(run):
        with open(os.path.join(run["run_dir"], "train.log")) as f:
            curve = parse_log(f.read())["train"]
        run["final_train_loss"] = curve[-1][1] if curve else None
        run["curve"] = {}
        start = time.time()
        for it in [max_iter] if args.tune else checkpoints:     # the grid reads the end of its runs only
            weights = os.path.join(run["run_dir"], "snap_iter_%d.caffemodel" % it)
            net = caffe.Net(deploy, caffe.TEST, weights=weights)
            run["curve"][str(it)] = evaluate_net(net, losses[run["loss"]][2], arrays, run["condition"], subsets,
                                                 args.probe_c)
        run.update(run["curve"][str(max_iter)])       # the headline numbers: the end of the run
        run["eval_seconds"] = time.time() - start
        say("  [%-24s] %s, eval %.0f s  train loss %s  val mAP %.3f  tag mAP %.3f  probe %s  (by iteration: %s)" % (
            run["name"], "reused" if run.get("reused") else "%3.0f s" % run["train_seconds"], run["eval_seconds"],
            run["final_train_loss"], run["val_map"], run["tag_map"],
            " ".join("%s-shot %.3f" % kv for kv in run["probe_accuracy"].items()),
            ", ".join("%s: %.3f" % (it, c["probe_accuracy"][str(max(args.shots))])
                      for it, c in sorted(run["curve"].items(), key=lambda kv: int(kv[0])))))
        return run

    def new_run(loss, cond, lr, seed):
        return {"loss": loss, "condition": cond, "seed": seed, "base_lr": lr,
                "name": "%s %s lr%g s%d" % (loss, cond, lr, seed),
                "run_dir": os.path.join(out, "runs", cond, loss, "lr%g" % lr, "it%d" % max_iter, "seed%d" % seed)}

    def run_all(runs):
        """Train (args.jobs at a time) and evaluate ``runs``, in order of completion."""
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            pending = [pool.submit(train_one, r) for r in runs]
            for fut in pending:
                run = fut.result()
                if not run.get("missing"):
                    finish(run)

    groups = [(cond, loss) for cond in args.conditions for loss in args.losses]
    t1 = time.time()
    say("\n== 2/4 pretraining with %s train: %d losses x %d conditions; %d iterations of batch %d; "
        "sigmoid-family prior %s; %d at a time"
        % (caffe_binary(), len(args.losses), len(args.conditions), max_iter, transfer_nets.BATCH,
           {c: None if p is None else round(p, 4) for c, p in data["prior"].items()}, args.jobs))
    if args.tune:
        say("   --tune: grid %s per loss and condition with seeds %s, %d iterations; a rate scores its worst "
            "seed's validation mAP; extended on the 1-3-10 ladder while the best is at an edge (at most %d rates)"
            % (args.lrs, args.tune_seeds, max_iter, args.max_grid))
        grid = {g: [new_run(g[1], g[0], lr, args.tune_seeds[0]) for lr in args.lrs] for g in groups}
        todo = [r for g in groups for r in grid[g]]
        chosen = {}
        while todo:
            run_all(todo)
            todo = []
            for g in groups:
                more = next_seed_run(grid[g], args.tune_seeds)
                if more is not None:              # a rate that may still win needs its next seed
                    todo.append(new_run(g[1], g[0], more[0], more[1]))
                    grid[g].append(todo[-1])
                    continue
                best, nxt = choose(worst_by_rate(grid[g]), args.max_grid)
                chosen[g] = best
                if nxt is not None and nxt not in [r["base_lr"] for r in grid[g]]:
                    todo.append(new_run(g[1], g[0], nxt, args.tune_seeds[0]))
                    grid[g].append(todo[-1])
        rows = []
        for g in groups:
            lrs = sorted({r["base_lr"] for r in grid[g]})
            say("  [%s %s] chosen lr %g (worst seed's val mAP %s)%s" % (g[1], g[0], chosen[g]["base_lr"], ", ".join(
                "%g: %.3f" % (r["base_lr"], r["val_map"]) for r in worst_by_rate(grid[g])),
                "" if lrs[0] < chosen[g]["base_lr"] < lrs[-1] else "  AT THE EDGE"))
            rows += [{k: r[k] for k in ("loss", "condition", "seed", "base_lr", "val_map", "tag_map",
                                        "probe_accuracy", "dead_features", "diverged", "train_seconds")}
                     for r in sorted(grid[g], key=lambda r: (r["base_lr"], r["seed"]))]
        tuned = {
            "chosen": {loss: {c: chosen[c, loss]["base_lr"] for c in args.conditions} for loss in args.losses},
            "interior": {loss: {c: min(r["base_lr"] for r in grid[c, loss]) < chosen[c, loss]["base_lr"]
                                < max(r["base_lr"] for r in grid[c, loss]) for c in args.conditions}
                         for loss in args.losses},
            "grid": rows, "tune_iter": max_iter, "seeds": list(args.tune_seeds), "prior": data["prior"],
            "rule": "a rate scores its worst seed's validation mAP after --tune-iter iterations, over "
                    "--tune-seeds (a rate whose seeds so far already score no more than a rate run with every "
                    "seed is not run further); the best is chosen (ties: the smaller rate), and the grid is "
                    "extended until it is interior",
            "command": " ".join([os.path.relpath(sys.executable, REPO), "examples/transfer/run_transfer.py"]
                                + (argv if argv is not None else sys.argv[1:])),
            "seconds": time.time() - t0, "load_average": {"start": load_start,
                                                          "end": [round(x, 2) for x in os.getloadavg()]},
            "date": time.strftime("%Y-%m-%d"), "machine": machine()}
        tuned = merge_tuning(read_json(args.tuned) if os.path.exists(args.tuned) else None, tuned, args.tuned)
        write_json(args.tuned, tuned)
        say("\ntuned rates: %s\nwritten to %s; wall time %.0f s" % (tuned["chosen"], args.tuned, tuned["seconds"]))
        return tuned

    rest = [x for x in args.losses if x not in args.fixed_lr]
    rates, source = tuned_rates(args.tuned, rest, args.conditions) if rest else ({}, {})
    for loss, lr in args.fixed_lr.items():
        rates[loss] = {c: lr[0] for c in args.conditions}
        source[loss] = {c: "--fixed-lr" for c in args.conditions}
    data["rate_tuned_on"] = source
    final_runs = [new_run(loss, cond, rates[loss][cond], seed)
                  for cond, loss in groups for seed in args.seeds]
    say("   rates %s; snapshots at %s" % (rates, checkpoints))
    run_all(final_runs)
    if args.no_train:
        say("   --no-train: %d of %d runs were not found finished in %s and are left out"
            % (sum(1 for r in final_runs if r.get("missing")), len(final_runs), out))
        final_runs = [r for r in final_runs if not r.get("missing")]
    t_train = time.time() - t1

    say("\n== 3/4 baselines: raw pixels, randomly initialised CNN (seeds %s)" % args.seeds)
    baselines = []
    pixels = {k: arrays[k]["data"].reshape(len(arrays[k]["data"]), -1) for k in ("probe_train", "probe_test")}
    baselines.append({"features": "raw pixels (576)", "seed": None,
                      "probe_accuracy": probe_all(pixels, arrays, subsets, args.probe_c)})
    for seed in args.seeds:
        caffe.set_random_seed(seed)
        net = caffe.Net(deploy, caffe.TEST)
        feats = {k: forward(net, arrays[k]["data"], (transfer_nets.FEATURES,))[transfer_nets.FEATURES]
                 for k in ("probe_train", "probe_test")}
        baselines.append({"features": "random-init CNN fc1 (128)", "seed": seed,
                          "probe_accuracy": probe_all(feats, arrays, subsets, args.probe_c)})
    tuning = None
    if os.path.exists(args.tuned) and len(args.fixed_lr) < len(args.losses):
        tuning = read_json(args.tuned)
    for r in final_runs:
        r.pop("run_dir", None)
    results = assemble_results(
        args, data, final_runs, tuning, rates, baselines,
        command=" ".join([os.path.relpath(sys.executable, REPO), "examples/transfer/run_transfer.py"]
                         + (argv if argv is not None else sys.argv[1:])),
        seconds={"train_and_eval": t_train, "total": time.time() - t0},
        load_average={"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]})
    say("\n== 4/4 report")
    write_report(results, out)
    say(markdown_tables(results))
    say("\n" + comparison_lines(results))
    say("\nresults: %s\nwall time %.0f s (pretraining + evaluation %.0f s); load average %s -> %s"
        % (os.path.join(out, "results.md"), results["seconds"]["total"], t_train, load_start,
           results["load_average"]["end"]))
    return results


def machine():
    """CPU model and count, for the tables' captions."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores" % (model, os.cpu_count() or 1)


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` through a temporary name (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
    sys.exit(0)
