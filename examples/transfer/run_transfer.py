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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
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
    p.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.1],
                   help="learning-rate grid, the same for every loss (searched with the first seed)")
    p.add_argument("--fixed-lr", nargs="+", default=[], metavar="LOSS=RATE",
                   help="skip the search for these losses (e.g. a longer-budget check at the chosen rates)")
    p.add_argument("--max-iter", type=int, default=1000, help="pretraining iterations of batch 64")
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
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel caffe runs, one core each")
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
                "probe_accuracy": {str(k): stats([r["probe_accuracy"][str(k)] for r in rs]) for k in shots}}
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
                d = np.array([a[s] - b[s] for s in seeds])
                spread = max(np.std([a[s] for s in seeds], ddof=1) if len(seeds) > 1 else 0.0,
                             np.std([b[s] for s in seeds], ddof=1) if len(seeds) > 1 else 0.0)
                out.append({"condition": cond, "versus": other, "metric": metric if key is None else
                            "probe_%s" % key, "mean_difference": float(d.mean()),
                            "paired": [float(x) for x in d], "seed_std": float(spread),
                            "exceeds_spread": bool(len(seeds) > 1 and (np.all(d > 0) or np.all(d < 0))
                                                   and abs(d.mean()) > spread)})
    return out


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
        for loss, by_cond in results["summary"].items():
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


def lr_table(results):
    shots = results["shots"]
    head = ["loss", "condition", "lr", "val mAP (selects)", "tag mAP"] + ["%d-shot" % k for k in shots]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(results["lr_search"], key=lambda r: (r["condition"], r["loss"], r["base_lr"])):
        chosen = results["selected_lr"][r["loss"]][r["condition"]] == r["base_lr"]
        lines.append("| %s | %s | %g%s | %.3f | %.3f | %s |" % (
            r["loss"], r["condition"], r["base_lr"], " (chosen)" if chosen else "", r["val_map"], r["tag_map"],
            " | ".join("%.3f" % r["probe_accuracy"][str(k)] for k in shots)))
    return "\n".join(lines)


def comparison_lines(results):
    lines = []
    for c in results["comparisons"]:
        lines.append("- %s, %s: softmax − %s = %+.3f (per seed %s; seed std %.3f)%s" % (
            c["condition"], c["metric"], c["versus"], c["mean_difference"],
            ", ".join("%+.3f" % x for x in c["paired"]), c["seed_std"],
            " — exceeds the seed spread" if c["exceeds_spread"] else " — within the seed spread"))
    return "\n".join(lines)


def wall_time_line(results):
    every = results["runs"] + [r for r in results["lr_search"] if r not in results["runs"]]
    reused = sum(1 for r in every if r.get("reused"))
    trained = sum(r.get("train_seconds") or 0.0 for r in every)
    return ("Wall time of this invocation %.0f s (load average %s at the start, %s at the end); "
            "%d of %d pretraining runs reused from an earlier invocation (--reuse); "
            "caffe train time of all %d runs, from their logs: %.0f s summed."
            % (results["seconds"]["total"], results["load_average"]["start"], results["load_average"]["end"],
               reused, len(every), len(every), trained))


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("probe_accuracy", str(k), "probe accuracy, %d-shot" % k) for k in results["shots"]] + \
        [("tag_map", None, "tag mAP (clean tags, held-out scans)")]
    losses = list(results["summary"])
    conds = results["conditions"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    width = 0.8 / max(1, len(losses))
    for ax, (metric, key, title) in zip(np.atleast_1d(axes), panels, strict=True):
        for i, loss in enumerate(losses):
            ss = [results["summary"][loss][c][metric] if key is None else
                  results["summary"][loss][c][metric][key] for c in conds]
            ax.bar(np.arange(len(conds)) + (i - (len(losses) - 1) / 2) * width, [s["mean"] for s in ss], width,
                   yerr=[s["std"] for s in ss], capsize=3, label=loss)
            for j, c in enumerate(conds):       # the individual seeds
                vals = [r[metric] if key is None else r[metric][key] for r in results["runs"]
                        if r["loss"] == loss and r["condition"] == c]
                ax.plot([j + (i - (len(losses) - 1) / 2) * width] * len(vals), vals, "k.", ms=3)
        if key is not None:
            for name, s in results["baseline_summary"].items():
                ax.axhline(s[key]["mean"], ls="--", lw=1, color="gray")
                ax.text(len(conds) - 0.5, s[key]["mean"], " " + name, fontsize=7, va="bottom", ha="right")
        lo = min(r[metric] if key is None else r[metric][key] for r in results["runs"])
        if key is not None:
            lo = min([lo] + [s[key]["mean"] for s in results["baseline_summary"].values()])
        ax.set_ylim(max(0.0, lo - 0.05), 1.0)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels(["%s tags" % c for c in conds])
        ax.set_title(title, fontsize=10)
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results, out):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot_path = plot(results, os.path.join(out, "transfer.png"))
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
          "Differences (paired by seed):", "", comparison_lines(results), "",
          "Learning-rate search (seed %d):" % results["seeds"][0], "", lr_table(results), "",
          "Plot: %s" % os.path.basename(plot_path), "",
          wall_time_line(results)]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return md


def assemble_results(args, data, runs, lr_search, selected, baselines, command, seconds, load_average):
    """Everything results.json holds; ``runs`` are the runs at the chosen learning rates."""
    baseline_summary = {}
    for name in dict.fromkeys(b["features"] for b in baselines):
        bs = [b for b in baselines if b["features"] == name]
        baseline_summary[name] = {str(k): stats([b["probe_accuracy"][str(k)] for b in bs]) for k in args.shots}
    losses = transfer_nets.available_losses()
    return {
        "seeds": list(args.seeds), "conditions": list(args.conditions), "shots": list(args.shots),
        "runs": runs,
        "losses": {name: {"layer": losses[name][0], "options": losses[name][1],
                          "description": transfer_nets.LOSS_NAMES[name]} for name in args.losses},
        "lr_grid": list(args.lrs), "selected_lr": selected, "lr_search": lr_search,
        "summary": summarize(runs, args.losses, args.conditions, args.shots),
        "comparisons": compare(runs, "softmax", args.conditions, args.shots) if "softmax" in args.losses else [],
        "baselines": baselines, "baseline_summary": baseline_summary,
        "data": data,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "command": command, "seconds": seconds, "load_average": load_average, "cpu_count": os.cpu_count(),
    }


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
    deploy = os.path.join(out, "deploy.prototxt")
    with open(deploy, "w") as f:
        f.write(transfer_nets.deploy_prototxt(data["tags"]))

    import caffe
    caffe.set_mode_cpu()

    def train_one(run):
        run_dir = run["run_dir"]
        os.makedirs(run_dir, exist_ok=True)
        net_path = os.path.join(run_dir, "train.prototxt")
        solver = os.path.join(run_dir, "solver.prototxt")
        files = {net_path: "# data: %s sha256 %s\n" % (data["h5_file"], data_digest) +
                 transfer_nets.train_prototxt(run["loss"], data["tags"], data["list_file"], run["condition"]),
                 solver: transfer_nets.solver_prototxt(net_path, os.path.join(run_dir, "snap"), run["base_lr"],
                                                       args.max_iter, run["seed"])}
        if args.reuse and finished(run_dir, files):
            with open(os.path.join(run_dir, "train.log")) as f:
                run["train_seconds"], run["reused"] = log_seconds(f.read()), True
            return run
        for path, text in files.items():
            with open(path, "w") as f:
                f.write(text)
        start = time.time()
        rc = train(solver, os.path.join(run_dir, "train.log"), progress_every=args.max_iter,
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
        return (os.path.exists(os.path.join(run_dir, "snap_iter_%d.caffemodel" % args.max_iter))
                and os.path.exists(log) and "Optimization Done" in read(log))

    def finish(run):
        with open(os.path.join(run["run_dir"], "train.log")) as f:
            curve = parse_log(f.read())["train"]
        run["final_train_loss"] = curve[-1][1] if curve else None
        weights = os.path.join(run["run_dir"], "snap_iter_%d.caffemodel" % args.max_iter)
        net = caffe.Net(deploy, caffe.TEST, weights=weights)
        run.update(evaluate_net(net, losses[run["loss"]][2], arrays, run["condition"], subsets, args.probe_c))
        say("  [%-22s] %s  train loss %s  val mAP %.3f  tag mAP %.3f  probe %s" % (
            run["name"], "reused" if run.get("reused") else "%3.0f s" % run["train_seconds"],
            run["final_train_loss"], run["val_map"], run["tag_map"],
            " ".join("%s-shot %.3f" % kv for kv in run["probe_accuracy"].items())))

    def new_run(loss, cond, lr, seed):
        return {"loss": loss, "condition": cond, "seed": seed, "base_lr": lr,
                "name": "%s %s lr%g s%d" % (loss, cond, lr, seed),
                "run_dir": os.path.join(out, "runs", cond, loss, "lr%g" % lr, "seed%d" % seed)}

    groups = [(cond, loss) for cond in args.conditions for loss in args.losses]
    first = args.seeds[0]
    say("\n== 2/4 pretraining with %s train: %d losses x %d conditions; lr grid %s with seed %d, "
        "then seeds %s at the chosen lr; %d iterations of batch %d; %d at a time"
        % (caffe_binary(), len(args.losses), len(args.conditions), args.lrs, first,
           args.seeds[1:], args.max_iter, transfer_nets.BATCH, args.jobs))
    search = {g: [new_run(g[1], g[0], lr, first) for lr in args.fixed_lr.get(g[1], args.lrs)] for g in groups}
    selected: dict[str, dict[str, float]] = {}      # {loss: {condition: base_lr}}
    final_runs = []
    t1 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = {pool.submit(train_one, r): ("search", r) for g in groups for r in search[g]}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                stage, run = pending.pop(fut)
                finish(fut.result())
                if stage == "final":
                    continue
                cond, loss = group = (run["condition"], run["loss"])
                if all("val_map" in r for r in search[group]):
                    best = max(search[group], key=lambda r: (r["val_map"], -r["base_lr"]))
                    selected.setdefault(loss, {})[cond] = best["base_lr"]
                    final_runs.append(best)
                    if len(search[group]) > 1:
                        say("  [%s %s] chosen lr %g (val mAP %s)" % (loss, cond, best["base_lr"], ", ".join(
                            "%g: %.3f" % (r["base_lr"], r["val_map"]) for r in search[group])))
                    for seed in args.seeds[1:]:
                        r = new_run(loss, cond, best["base_lr"], seed)
                        pending[pool.submit(train_one, r)] = ("final", r)
                        final_runs.append(r)
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
    final_runs.sort(key=lambda r: (args.conditions.index(r["condition"]), args.losses.index(r["loss"]),
                                   args.seeds.index(r["seed"])))
    results = assemble_results(
        args, data, final_runs, [r for g in groups for r in search[g]], selected, baselines,
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


if __name__ == "__main__":
    main()
    sys.exit(0)
