"""Offline hyper-parameter search for the yeast benchmark, by inner validation on training folds only.

    .venv/bin/python examples/yeast/search_yeast.py [--jobs 2] [--out output/yeast/search]

For each outer fold k of the 10 (yeast_data.outer_folds) and each loss variant, the
fold's TRAINING rows are split once more, 80/20 (yeast_data.inner_split: the first split
of KFold(5, shuffle=True, random_state=0) over them); features are standardized on the
80 % part. Every grid point (hidden width, base_lr, weight_decay) is trained on the 80 %
part with ``caffe train`` with a snapshot every 5 epochs up to 60; each snapshot is scored
on the 20 % part. The chosen (width, lr, decay, epochs) minimizes the validation
ranking loss + (1 - average precision); the decision threshold (Hamming loss) is the one
with the lowest validation Hamming loss for that choice. The outer test fold is never
read. Writes examples/yeast/hparams.json (the choices, per fold and variant, which
run_yeast.py uses) and examples/yeast/search_log.csv (every grid point and epoch).
"""
import argparse
import csv
import itertools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

HERE = os.path.dirname(os.path.abspath(__file__))

import yeast_data  # noqa: E402
import yeast_eval  # noqa: E402
import yeast_train  # noqa: E402
from yeast_train import REPO, VARIANTS  # noqa: E402

FIXED = {"dropout": 0.5, "batch_size": 256}
HIDDEN = (256, 1024)
LR_DECAY = ((0.001, 0.0001), (0.003, 0.0001), (0.003, 0.001))     # (base_lr, weight_decay)
EPOCH_STEP, MAX_EPOCHS = 5, 60
HPARAMS = os.path.join(HERE, "hparams.json")
SEARCH_LOG = os.path.join(HERE, "search_log.csv")


def grid_points():
    for hidden, (lr, decay) in itertools.product(HIDDEN, LR_DECAY):
        yield dict(FIXED, hidden=hidden, base_lr=lr, weight_decay=decay, epochs=MAX_EPOCHS)


def criterion(m):
    """What the search minimizes: validation ranking loss + (1 - average precision)."""
    return m["ranking_loss"] + 1.0 - m["average_precision"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "output", "yeast", "search"))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--folds", type=int, nargs="+", default=list(range(yeast_data.N_FOLDS)))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = p.parse_args(argv)
    t0 = time.time()
    X, Y = yeast_data.load_yeast()
    folds = yeast_data.outer_folds(len(X))
    inner = {}
    for k in args.folds:
        fit, val = yeast_data.inner_split(folds[k][0])
        Xf, Xv = yeast_data.standardize(X[fit], X[val])
        lst = yeast_train.write_h5(os.path.join(args.out, "fold%d" % k), Xf, Y[fit])
        inner[k] = (fit, val, Xv, lst)
    jobs = [(k, v, i, hp) for k in args.folds for v in args.variants for i, hp in enumerate(grid_points())]
    print("%d runs (%d folds x %d variants x %d grid points), %d at a time"
          % (len(jobs), len(args.folds), len(args.variants), len(jobs) // max(1, len(args.folds) * len(args.variants)),
             args.jobs), flush=True)

    def train_one(job):
        k, v, i, hp = job
        run_dir = os.path.join(args.out, "fold%d" % k, v, "g%d" % i)
        snaps = yeast_train.train_run(v, run_dir, inner[k][3], len(inner[k][0]), hp, snapshot_every=EPOCH_STEP)
        return job, run_dir, snaps

    rows: list[dict] = []
    best: dict[tuple[int, str], tuple[dict, dict]] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_one, j) for j in jobs]
        for n, fut in enumerate(as_completed(futures), 1):
            (k, v, i, hp), run_dir, snaps = fut.result()
            fit, val, Xv, _ = inner[k]
            scorer = yeast_train.Scorer(hp["hidden"], hp["dropout"], run_dir)
            for it, path in snaps:
                epochs = round(it * hp["batch_size"] / len(fit))
                scores = scorer.scores(path, Xv)
                probs = yeast_train.probabilities(v, scores)
                t, _ = yeast_eval.best_threshold(Y[val], probs)
                m = yeast_eval.fold_metrics(Y[val], scores, yeast_eval.decide(probs, t))
                row = {"fold": k, "variant": v, "hidden": hp["hidden"], "base_lr": hp["base_lr"],
                       "weight_decay": hp["weight_decay"], "epochs": epochs, "threshold": t}
                row.update({key: round(val_, 5) for key, val_ in m.items()})
                rows.append(row)
                if (k, v) not in best or criterion(m) < criterion(best[k, v][1]):
                    best[k, v] = (row, m)
            print("  [%3d/%d] fold %d %-18s h=%-4d lr=%g wd=%g done (%.0f s)"
                  % (n, len(jobs), k, v, hp["hidden"], hp["base_lr"], hp["weight_decay"], time.time() - t0),
                  flush=True)

    # A search of some variants (--variants) keeps the other variants' record and log rows.
    old_record, old_rows, old_runs = {}, [], []
    if os.path.exists(HPARAMS) and os.path.exists(SEARCH_LOG):
        with open(HPARAMS) as f:
            old = json.load(f)
        old_record, old_runs = old.get("variants", {}), old.get("runs", [])
        if "command" in old:              # a record from before "runs" was kept as a list
            old_runs = [{"command": old["command"], "variants": sorted(old_record), "seconds": old.get("seconds")}]
        with open(SEARCH_LOG, newline="") as f:
            old_rows = [dict(r, fold=int(r["fold"]), hidden=int(r["hidden"]), epochs=int(r["epochs"]))
                        for r in csv.DictReader(f) if r["variant"] not in args.variants]
    rows += old_rows
    rows.sort(key=lambda r: (int(r["fold"]), VARIANTS.index(r["variant"]), int(r["hidden"]), float(r["base_lr"]),
                             float(r["weight_decay"]), int(r["epochs"])))
    with open(SEARCH_LOG, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    chosen = {v: per_fold for v, per_fold in old_record.items() if v not in args.variants}
    for (k, v), (row, _) in sorted(best.items()):
        chosen.setdefault(v, {})[str(k)] = dict(
            FIXED, hidden=row["hidden"], base_lr=row["base_lr"], weight_decay=row["weight_decay"],
            epochs=row["epochs"], threshold=row["threshold"],
            inner_val={"ranking_loss": row["ranking_loss"], "average_precision": row["average_precision"]})
    record = {
        "how": ("Per outer fold and variant: inner 80/20 split of the outer TRAINING rows "
                "(first split of KFold(5, shuffle=True, random_state=0)); features standardized on the 80%%; "
                "grid hidden x (base_lr, weight_decay) = %s x %s, dropout %s, batch %d, Adam, epochs %d..%d "
                "step %d (snapshots); chosen: min validation ranking_loss + (1 - average_precision); "
                "threshold: min validation Hamming loss of the chosen model over %s..%s step 0.01. "
                "The outer test fold is never used."
                % (list(HIDDEN), [list(x) for x in LR_DECAY], FIXED["dropout"],
                   FIXED["batch_size"], EPOCH_STEP, MAX_EPOCHS, EPOCH_STEP,
                   yeast_eval.THRESHOLDS[0], yeast_eval.THRESHOLDS[-1])),
        "runs": old_runs + [{
            "command": "%s examples/yeast/search_yeast.py %s" % (
                os.path.relpath(sys.executable, REPO), " ".join(argv if argv is not None else sys.argv[1:])),
            "variants": args.variants, "seconds": round(time.time() - t0),
            "load_average_end": [round(x, 2) for x in os.getloadavg()]}],
        "search_log": os.path.relpath(SEARCH_LOG, REPO),
        "variants": chosen,
    }
    with open(HPARAMS, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    print("wrote %s and %s in %.0f s" % (HPARAMS, SEARCH_LOG, time.time() - t0))


if __name__ == "__main__":
    main()
