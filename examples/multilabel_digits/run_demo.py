"""Multi-label digits demo: data, training of every loss variant, evaluation, report.

    .venv/bin/python examples/multilabel_digits/run_demo.py [--out output/digits] [--seeds 1 2 3]

1. composes 1-3 real 8x8 digit scans per 24x24 image (digits_data.py) into HDF5;
2. trains prototxt/digits/<variant>_solver.prototxt for each loss variant and solver
   seed with ``.venv/bin/caffe train`` (one run per CPU core), showing the
   Caffe log filtered to iteration/loss lines; full logs and snapshots stay in
   <out>/runs/<variant>/seed<S>/;
3. scores every snapshot on the test set with pycaffe (digits_eval.py);
4. writes <out>/results.json, <out>/results.md and <out>/losses.png and prints the table.
"""
import argparse
import json
import math
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import digits_data  # noqa: E402
import digits_eval  # noqa: E402
import digits_report  # noqa: E402
import digits_train  # noqa: E402
from digits_train import REPO, VARIANTS  # noqa: E402

TEST_BATCH = 100     # batch_size of the TEST HDF5Data layer in the train_val prototxts
TRAIN_BATCH = 64
# `make demo` runs each committed solver for DEMO_MAX_ITER iterations (the learning-rate step at 80%),
# not the solvers' 3,000, to stay within a few minutes on 2 cores; --max-iter 0 runs them in full.
DEMO_MAX_ITER = 1500
ITER_RE = re.compile(r"^iter\s+(\d+)")


class Progress:
    """Work done over all runs -> percentage, elapsed time and an estimate of the time left.

    Work is counted in training iterations; scoring a finished run's snapshots counts as
    EVAL_SHARE of its iterations (measured: a few seconds against a few minutes of
    training). The estimate extrapolates the rate so far to the work still to do.
    """
    EVAL_SHARE = 0.05

    def __init__(self, runs, max_iter):
        self.max_iter = max_iter
        self.done = {name: 0.0 for name in runs}
        self.total = max_iter * (1 + self.EVAL_SHARE) * len(runs)
        self.start = time.time()

    def update(self, name, text):
        m = ITER_RE.match(text)
        if m:
            self.done[name] = max(self.done[name], min(int(m.group(1)), self.max_iter))

    def finish(self, name):
        """The run is trained and its snapshots scored."""
        self.done[name] = self.max_iter * (1 + self.EVAL_SHARE)

    def status(self):
        done, elapsed = sum(self.done.values()), time.time() - self.start
        left = "~%s left" % _minutes(elapsed * (self.total - done) / done) if done else "estimating"
        return "%3.0f%% %s elapsed, %s" % (100.0 * done / self.total, _minutes(elapsed), left)


def _minutes(seconds):
    return "%d:%02d" % divmod(int(round(seconds)), 60)


def cpu_seconds():
    """User + system CPU time of this process and its finished children (the caffe runs)."""
    import resource
    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))


def machine():
    """CPU model, core count and load average: what the wall times depend on."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": os.cpu_count(), "loadavg_1_5_15": [round(v, 2) for v in load] if load else None}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "output", "digits"))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="solver random_seed values")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=9600)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--max-iter", type=int, default=DEMO_MAX_ITER, help="override the solvers' max_iter; "
                   "stepsize becomes 80%%%% of it (default %d; 0 = the solvers' own 3,000)" % DEMO_MAX_ITER)
    p.add_argument("--base-lr", type=float, default=None, help="override the solvers' base_lr "
                   "(for learning-rate sensitivity checks; the default keeps the committed 0.05)")
    p.add_argument("--snapshot-every", type=int, default=None, help="override snapshot/test_interval")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel caffe runs, one BLAS thread each (default: CPU count)")
    p.add_argument("--progress-every", type=int, default=300,
                   help="show the training loss every N iterations (test loss: at every test)")
    return p.parse_args(argv)


def solver_overrides(args):
    if args.n_test % TEST_BATCH:
        raise SystemExit("--n-test must be a multiple of %d" % TEST_BATCH)
    fields = {"test_iter": args.n_test // TEST_BATCH}
    if args.max_iter:
        fields["max_iter"] = args.max_iter
        fields["stepsize"] = max(1, int(args.max_iter * 0.8))
        fields["display"] = max(1, min(100, args.max_iter // 30))
    if args.base_lr:
        fields["base_lr"] = args.base_lr
    if args.snapshot_every:
        fields["snapshot"] = fields["test_interval"] = args.snapshot_every
    return fields


def evaluate_run(run, test_data, test_labels):
    deploy = digits_train.prototxt_path(run["variant"], "deploy")
    snaps = []
    for it, path in digits_train.list_snapshots(run["run_dir"]):
        m = digits_eval.evaluate(deploy, path, test_data, test_labels)
        m["iter"] = it
        m["caffemodel"] = path
        snaps.append(m)
    if not snaps:
        raise RuntimeError("%s: no snapshots in %s" % (run["name"], run["run_dir"]))
    run["snapshots"] = [{k: v for k, v in s.items() if k != "per_class_ap"} for s in snaps]
    run["final"] = snaps[-1]
    return run


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    print_lock = threading.Lock()
    machine_start = machine()

    def say(text):
        with print_lock:
            print(text, flush=True)

    say("%s, %d cores, load average %s; progress lines end with [done, elapsed, time left]"
        % (machine_start["cpu"], machine_start["cores"], machine_start["loadavg_1_5_15"]))
    # 1. data
    say("== 1/3 data: %d train + %d test images (data seed %d)" % (args.n_train, args.n_test, args.data_seed))
    fields = solver_overrides(args)
    snapshot_every = fields.get("snapshot") or int(digits_train.solver_field(args.variants[0], "snapshot"))
    if (snapshot_every * TRAIN_BATCH) % args.n_train:
        say("   note: snapshots every %d iterations of %d images are not on epoch boundaries of %d "
            "images; resuming from them is not exact (HDF5Data restarts at row 0)"
            % (snapshot_every, TRAIN_BATCH, args.n_train))
    data_dir = os.path.join(out, "data")
    data_summary = digits_data.make_dataset(data_dir, args.n_train, args.n_test, args.data_seed,
                                            log=say)
    say(digits_data.format_summary(data_summary))
    t_data = time.time() - t0

    # 2. train every (variant, seed); evaluate each run's snapshots as soon as it ends
    runs = []
    for variant in args.variants:
        for seed in args.seeds:
            run_dir = os.path.join(out, "runs", variant, "seed%d" % seed)
            runs.append({"variant": variant, "seed": seed, "name": "%s s%d" % (variant, seed),
                         "run_dir": run_dir, "log": os.path.join(run_dir, "train.log")})
    say("\n== 2/3 training %d runs with %s train (%d at a time); each run's snapshots are "
        "scored on the test set with pycaffe when it ends%s"
        % (len(runs), digits_train.caffe_bin(), args.jobs,
           "; overrides: %s" % fields if fields else ""))
    test_data, test_labels = digits_eval.load_split(data_summary["splits"]["test"]["h5_file"])
    max_iter = int(fields.get("max_iter") or digits_train.solver_field(args.variants[0], "max_iter"))
    progress = Progress([r["name"] for r in runs], max_iter)

    def on_progress(run, text):
        with print_lock:
            progress.update(run["name"], text)
            print("  [%-22s] %-36s [%s]" % (run["name"], text, progress.status()), flush=True)

    def train_one(run):
        if os.path.isdir(run["run_dir"]):
            for _, old in digits_train.list_snapshots(run["run_dir"]) + \
                    digits_train.list_snapshots(run["run_dir"], "solverstate"):
                os.remove(old)
        solver = digits_train.prepare_run(run["variant"], run["run_dir"], data_dir,
                                          seed=run["seed"], **fields)
        start = time.time()
        rc = digits_train.train(solver, run["log"], progress_every=args.progress_every,
                                on_progress=lambda t: on_progress(run, t))
        run["train_seconds"] = time.time() - start
        run["command"] = "%s train --solver %s" % (digits_train.caffe_bin(), solver)
        if rc != 0:
            raise RuntimeError("%s: caffe exited with %d, see %s" % (run["name"], rc, run["log"]))
        return run

    t1 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_one, r) for r in runs]
        for fut in as_completed(futures):
            run = fut.result()
            with open(run["log"]) as f:
                parsed = digits_train.parse_log(f.read())
            if not parsed["train"]:
                raise RuntimeError("%s: no training loss in %s" % (run["name"], run["log"]))
            run["train_loss"] = parsed["train"]
            run["test_loss"] = parsed["test"]
            evaluate_run(run, test_data, test_labels)
            progress.finish(run["name"])
            say("  [%-22s] done in %.0f s; test mAP %.4f at iter %d [%s]"
                % (run["name"], run["train_seconds"], run["final"]["mAP"], run["final"]["iter"], progress.status()))
    t_train = time.time() - t1

    # 3. report
    summary = digits_report.summarize(runs)
    table = digits_report.markdown_table(summary, runs)
    hist = {int(k): v for k, v in data_summary["splits"]["train"]["cardinality_histogram"].items()}
    softmax_floor = sum(v * math.log(k) for k, v in hist.items() if k > 0) / sum(hist.values())
    plot_path = digits_report.plot(runs, os.path.join(out, "losses.png"), softmax_floor)
    wall = time.time() - t0
    results = {
        "command": " ".join([os.path.relpath(sys.executable, REPO), "examples/multilabel_digits/run_demo.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "solver_overrides": fields,
        "data": data_summary,
        "summary": summary,
        "runs": runs,
        "softmax_loss_floor": softmax_floor,
        "seconds": {"data": t_data, "train_and_eval": t_train, "total": wall, "cpu": cpu_seconds()},
        "machine": dict(machine_start, loadavg_at_end=machine()["loadavg_1_5_15"]),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = ["# Multi-label digits: loss comparison", "", "`%s`" % results["command"], "",
          "Test set: %d images (%d held-out source scans). Metrics of the last snapshot; "
          "mean ± sample std (min–max) over solver seeds %s." % (
              args.n_test, data_summary["source_scans"]["test"], ", ".join(map(str, args.seeds))), "",
          table, "", "Exact-set accuracy by the true number of digits M (mean over seeds):", "",
          digits_report.by_m_table(runs), "",
          "The softmax-multilabel loss cannot go below the entropy of its 1/M targets, "
          "mean log M = %.3f on this training set." % softmax_floor, "",
          "Plot: %s" % os.path.basename(plot_path), "",
          "Wall time: %.0f s (data %.0f s, training + evaluation %.0f s) on %s, %d cores, load average %s at "
          "the start and %s at the end." % (wall, t_data, t_train, machine_start["cpu"], machine_start["cores"],
                                           machine_start["loadavg_1_5_15"], results["machine"]["loadavg_at_end"])]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    say("\n== 3/3 report\n")
    say(table)
    say("\nresults: %s\ntable:   %s\nplot:    %s" % (os.path.join(out, "results.json"),
                                                   os.path.join(out, "results.md"), plot_path))
    say("wall time %.0f s (data %.0f s, training + evaluation %.0f s); CPU time %.0f s, load average %s at the end"
        % (wall, t_data, t_train, results["seconds"]["cpu"], results["machine"]["loadavg_at_end"]))
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
