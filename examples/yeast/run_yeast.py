"""Yeast multi-label benchmark: 10-fold CV of our Caffe losses next to scikit-learn baselines.

    .venv/bin/python examples/yeast/run_yeast.py [--out output/yeast] [--jobs 2]

1. loads yeast from the installed river wheel (yeast_data.py: shape + sha256 checked);
2. for each of the 10 folds of KFold(10, shuffle=True, random_state=0): standardizes the
   features on the training fold, trains the MLP of prototxt/yeast/ with each loss by
   ``.venv/bin/caffe train`` (one run per CPU core at a time), with that fold's
   hyper-parameters and decision threshold from examples/yeast/hparams.json (chosen by
   search_yeast.py on inner validation splits of the training fold only), and scores the
   test fold with pycaffe;
3. fits scikit-learn's OneVsRestClassifier(LogisticRegression) and MLPClassifier on the
   same folds;
   and the peers of yeast_peers.py (ML-kNN, an ensemble of classifier chains, a random forest,
   MLARAM) on the same folds, scored by the same code;
4. writes <out>/results.json, results.md and results.png (with the published numbers of
   examples/yeast/published.json that were found in the papers) and prints the table.
"""
import argparse
import json
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed

HERE = os.path.dirname(os.path.abspath(__file__))

import numpy as np  # noqa: E402

from softmax_multilabel_layer.tools.train import caffe_binary  # noqa: E402

import yeast_data  # noqa: E402
import yeast_eval  # noqa: E402
import yeast_peers  # noqa: E402
import yeast_train  # noqa: E402
from yeast_eval import METRICS  # noqa: E402
from yeast_train import LOSS_NAMES, REPO, VARIANTS  # noqa: E402

HPARAMS = os.path.join(HERE, "hparams.json")
PUBLISHED = os.path.join(HERE, "published.json")
BASELINES = {
    "sklearn OneVsRest(LogisticRegression)":
        "OneVsRestClassifier(LogisticRegression(max_iter=1000)), scikit-learn defaults otherwise",
    "sklearn MLPClassifier":
        "MLPClassifier(early_stopping=True, max_iter=500, random_state=0): 100 ReLU units, Adam, "
        "stops on a 10% validation split of the training fold",
}
METRIC_TITLES = {"hamming_loss": "Hamming loss ↓", "one_error": "one-error ↓", "coverage": "coverage ↓",
                 "ranking_loss": "ranking loss ↓", "average_precision": "average precision ↑",
                 "macro_map": "macro mAP ↑"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "output", "yeast"))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel caffe runs, one BLAS thread each (default: CPU count)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--folds", type=int, nargs="+", default=list(range(yeast_data.N_FOLDS)),
                   help="outer folds to run (default: all 10; fewer only for quick checks)")
    p.add_argument("--hparams", default=HPARAMS)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--no-peers", action="store_true", help="skip the peers of yeast_peers.py")
    return p.parse_args(argv)


def load_hparams(path, variants, folds):
    """hparams.json -> {variant: {fold: hp}}; a clear error if a (variant, fold) is missing."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit("run_yeast: cannot read %s (%s); run examples/yeast/search_yeast.py to make it"
                         % (path, exc)) from None
    out = {}
    for v in variants:
        per_fold = record.get("variants", {}).get(v, {})
        missing = [k for k in folds if str(k) not in per_fold]
        if missing:
            raise SystemExit("run_yeast: %s has no hyper-parameters for variant %s, fold(s) %s; run "
                             "examples/yeast/search_yeast.py --variants %s" % (path, v, missing, v))
        out[v] = {k: per_fold[str(k)] for k in folds}
    return out, record


def load_published(path=PUBLISHED):
    """published.json -> {name: method entry} for the methods that have values, and the rest's notes."""
    with open(path) as f:
        data = json.load(f)
    methods, missing = {}, {}
    for name, entry in data["methods"].items():
        values = entry.get("values") or {}
        if values:
            bad = [m for m in values if m not in METRICS]
            if bad or not entry.get("table"):
                raise SystemExit("run_yeast: %s: %s needs a 'table' and metrics among %s (got %s)"
                                 % (path, name, ", ".join(METRICS), bad))
            methods[name] = dict({"source": "published", "cite": entry["cite"], "table": entry["table"]},
                                 **values)
        else:
            missing[name] = "%s: %s" % (entry["cite"], entry.get("status", "no values"))
    return methods, missing


def run_baselines(X, Y, folds, say):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neural_network import MLPClassifier

    makers = {
        "sklearn OneVsRest(LogisticRegression)": lambda: OneVsRestClassifier(LogisticRegression(max_iter=1000)),
        "sklearn MLPClassifier": lambda: MLPClassifier(early_stopping=True, max_iter=500, random_state=0),
    }
    per_fold: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
    for k, (train, test) in folds:
        Xtr, Xte = yeast_data.standardize(X[train], X[test])
        for name, make in makers.items():
            model = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(Xtr, Y[train])
            probs = model.predict_proba(Xte)
            per_fold[name].append(yeast_eval.fold_metrics(Y[test], probs, model.predict(Xte)))
        say("  baselines fold %d done" % k)
    return per_fold


def markdown_table(methods):
    head = "| method | source | " + " | ".join(METRIC_TITLES[m] for m in METRICS) + " |"
    rows = [head, "|---|---|" + "---:|" * len(METRICS)]
    for name, entry in methods.items():
        cells = []
        for m in METRICS:
            v = entry.get(m)
            if v is None:
                cells.append("")
            else:
                digits = 3 if m == "coverage" else 4
                if entry["source"] == "published":
                    digits = 3
                cells.append("%.*f ± %.*f" % (digits, v["mean"], digits, v["std"]))
        rows.append("| %s | %s | %s |" % (name, entry["source"], " | ".join(cells)))
    return "\n".join(rows)


def targets(methods, per_fold=None):
    """The issue's 'must': the best of our layers beats both baselines on ranking loss and average precision.

    Caffe's own SigmoidCrossEntropyLoss is run here too but is not one of our layers. With
    ``per_fold``, also counts the folds where that best loss beats that baseline.
    """
    ours = {n: e for n, e in methods.items() if e["source"] == "ours"}
    base = {n: e for n, e in methods.items() if e["source"] == "baseline" and "model" in e}   # scikit-learn
    out = {}
    for m, lower in (("ranking_loss", True), ("average_precision", False)):
        pick = min if lower else max
        best_ours = pick(ours, key=lambda n: ours[n][m]["mean"]) if ours else None
        best_base = pick(base, key=lambda n: base[n][m]["mean"]) if base else None
        if best_ours and best_base:
            a, b = ours[best_ours][m]["mean"], base[best_base][m]["mean"]
            out[m] = {"best_ours": best_ours, "value": a, "best_baseline": best_base, "baseline": b,
                      "beats": bool(a < b if lower else a > b)}
            if per_fold:
                pairs = list(zip(per_fold[best_ours], per_fold[best_base], strict=True))
                out[m]["folds_won"] = "%d of %d" % (
                    sum((x[m] < y[m]) if lower else (x[m] > y[m]) for x, y in pairs), len(pairs))
    return out


def plot(methods, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"ours": "tab:blue", "baseline": "tab:gray", "peer": "tab:green", "published": "tab:orange"}
    names = list(methods)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(names) + 1.6), sharey=True)
    ys = np.arange(len(names))[::-1]
    for ax, m in zip(axes, ("ranking_loss", "average_precision"), strict=True):
        for y, n in zip(ys, names, strict=True):
            e = methods[n]
            if m in e:
                ax.errorbar(e[m]["mean"], y, xerr=e[m]["std"], fmt="o", color=colors[e["source"]], capsize=3)
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(METRIC_TITLES[m] + ", mean ± std over the folds", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    fig.legend(handles, list(colors), loc="lower center", ncol=len(colors), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    load_start = os.getloadavg()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    lock = threading.Lock()

    def say(text):
        with lock:
            print(text, flush=True)

    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)          # one BLAS thread here; the caffe runs take the other cores
    except ImportError:
        pass
    X, Y = yeast_data.load_yeast()
    hparams, hp_record = load_hparams(args.hparams, args.variants, args.folds)
    all_folds = yeast_data.outer_folds(len(X))
    folds = [(k, all_folds[k]) for k in args.folds]
    say("== yeast: %d genes, %d features, %d labels (%.2f per gene); %d folds; data %s"
        % (X.shape[0], X.shape[1], Y.shape[1], Y.sum(1).mean(), len(folds), yeast_data.yeast_path()))

    # 1. our losses: one caffe train per (fold, variant); score the test fold when each run ends
    test_sets = {}
    for k, (train, test) in folds:
        Xtr, Xte = yeast_data.standardize(X[train], X[test])
        lst = yeast_train.write_h5(os.path.join(out, "data", "fold%d" % k), Xtr, Y[train])
        test_sets[k] = (train, test, Xte, lst)
    runs = [(k, v) for k, _ in folds for v in args.variants]
    say("\n== 1/3 training %d MLPs with %s train (%d at a time)"
        % (len(runs), caffe_binary(), args.jobs))

    def train_one(run):
        k, v = run
        hp = hparams[v][k]
        start = time.time()
        snaps = yeast_train.train_run(v, os.path.join(out, "runs", "fold%d" % k, v), test_sets[k][3],
                                      len(test_sets[k][0]), hp)
        return run, snaps, time.time() - start

    ours: dict[str, dict[int, dict[str, float]]] = {v: {} for v in args.variants}
    t1 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_one, r) for r in runs]
        for fut in as_completed(futures):
            (k, v), snaps, seconds = fut.result()
            hp = hparams[v][k]
            train, test, Xte, _ = test_sets[k]
            run_dir = os.path.dirname(snaps[-1][1])
            scores = yeast_train.Scorer(hp["hidden"], hp["dropout"], run_dir).scores(snaps[-1][1], Xte)
            probs = yeast_train.probabilities(v, scores)
            m = yeast_eval.fold_metrics(Y[test], scores, yeast_eval.decide(probs, hp["threshold"]))
            ours[v][k] = m
            say("  fold %d %-18s %4.1f s  ranking loss %.4f  average precision %.4f"
                % (k, v, seconds, m["ranking_loss"], m["average_precision"]))
    t_ours = time.time() - t1

    # 2. baselines
    t2 = time.time()
    baselines = {}
    if not args.no_baselines:
        say("\n== 2/3 scikit-learn baselines on the same folds")
        baselines = run_baselines(X, Y, folds, say)
    t_base = time.time() - t2
    t3 = time.time()
    peers: dict[str, list[dict[str, float]]] = {}
    peer_seconds: dict[str, float] = {}
    if not args.no_peers:
        say("\n== peers (yeast_peers.py) on the same folds")
        peers, peer_seconds = yeast_peers.run_peers(X, Y, folds, say, jobs=args.jobs)
    t_peers = time.time() - t3

    # 3. report
    methods, per_fold = {}, {}
    for v in args.variants:
        name = LOSS_NAMES[v]
        per_fold[name] = [ours[v][k] for k, _ in folds]
        # Caffe's own SigmoidCrossEntropyLoss runs through the same pipeline but is not one of our layers.
        source = "baseline" if v == "sigmoid_native" else "ours"
        methods[name] = dict({"source": source, "variant": v}, **yeast_eval.summarize(per_fold[name]))
    for name, folds_m in baselines.items():
        per_fold[name] = folds_m
        methods[name] = dict({"source": "baseline", "model": BASELINES[name]}, **yeast_eval.summarize(folds_m))
    for name, folds_m in peers.items():
        per_fold[name] = folds_m
        methods[name] = yeast_peers.peer_row(name, folds_m, peer_seconds[name])
    published, not_found = load_published()
    methods.update(published)
    check = targets(methods, per_fold)
    wall = time.time() - t0
    results = {
        "folds": len(folds),
        "methods": methods,
        "per_fold": per_fold,
        "protocol": "KFold(n_splits=10, shuffle=True, random_state=0) over the 2,417 rows in file order; "
                    "features standardized on each training fold; metrics: Zhang & Zhou's (coverage = "
                    "deepest rank of a true label - 1), std = sample std over folds (ddof=1)",
        "hyperparameters": {"how": hp_record.get("how"), "file": os.path.relpath(args.hparams, REPO),
                            "per_variant_fold": hparams},
        "published_not_found": not_found,
        "targets": check,
        "comparison": yeast_peers.compare(per_fold, yeast_peers.sources(methods, "ours"),
                                          yeast_peers.sources(methods, "peer")),
        "command": " ".join([os.path.relpath(sys.executable, REPO), "examples/yeast/run_yeast.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "seconds": {"ours": round(t_ours, 1), "baselines": round(t_base, 1), "peers": round(t_peers, 1),
                    "total": round(wall, 1)},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "cpu_count": os.cpu_count(),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = markdown_table(methods)
    png = plot(methods, os.path.join(out, "results.png"))
    lines = ["# Yeast: 10-fold cross-validation", "", "`%s`" % results["command"], "",
             "Mean ± sample std over %d folds of KFold(10, shuffle=True, random_state=0). Our losses "
             "train the same MLP (prototxt/yeast/) with `caffe train`; hyper-parameters and the Hamming-"
             "loss threshold per fold come from inner validation on that fold's training rows only "
             "(examples/yeast/hparams.json)." % len(folds), "", table, ""]
    notes = ["- %s: best of our layers (%s) %.4f vs best baseline (%s) %.4f: %s (better in %s folds)"
             % (m, c["best_ours"], c["value"], c["best_baseline"], c["baseline"],
                "beats it" if c["beats"] else "does NOT beat it", c.get("folds_won", "?")) for m, c in check.items()]
    if not_found:
        notes += ["", "Published numbers not shown (not found in a source available here):"]
        notes += ["- %s — %s" % (n, s) for n, s in not_found.items()]
    notes += ["", "Wall time: %.0f s (our losses %.0f s, baselines %.0f s, peers %.0f s); load average at start "
              "%.2f, at end %.2f; %d CPUs." % (wall, t_ours, t_base, t_peers, load_start[0],
                                              results["load_average"]["end"][0], os.cpu_count() or 0)]
    comparison = yeast_peers.comparison_markdown(results)
    if comparison:
        notes += ["", comparison]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines + notes + ["", "Plot: results.png"]) + "\n")
    say("\n== 3/3 report\n")
    say(table)
    say("\n".join([""] + notes))
    say("results: %s\ntable:   %s\nplot:    %s" % (os.path.join(out, "results.json"),
                                                   os.path.join(out, "results.md"), png))
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
