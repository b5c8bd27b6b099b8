"""Train one loss variant with the real Caffe CLI (``.venv/bin/caffe train``).

A run folder gets copies of prototxt/digits/<variant>_{solver,train_val}.prototxt with
the data list files, snapshot prefix and chosen solver fields rewritten, the full Caffe
log (train.log) and the snapshots. Progress is the log filtered to iteration/loss lines.

    python examples/multilabel_digits/digits_train.py VARIANT --data output/digits/data \\
        --run-dir output/digits/runs/VARIANT [--max-iter N] [--seed S] [--snapshot X.solverstate]

The Caffe executable is always <repo>/.venv/bin/caffe, the wrapper ``make setup`` writes
(it sets up the paths for pycaffe and for this package's Python layers).
"""
import argparse
import os
import re
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTOTXT_DIR = os.path.join(REPO, "prototxt", "digits")
VARIANTS = ("softmax_multilabel", "sigmoid_native", "sigmoid_focal", "sigmoid_asl")
LOSS_NAMES = {
    "softmax_multilabel": "SoftmaxMultilabelLoss (ours, 1/M targets)",
    "sigmoid_native": "SigmoidCrossEntropyLoss (Caffe native)",
    "sigmoid_focal": "SigmoidMultilabelLoss (ours, focal gamma=2)",
    "sigmoid_asl": "SigmoidMultilabelLoss (ours, ASL gamma_neg=4 gamma_pos=0 clip=0.05)",
}
# Paths the committed train_val prototxts use (relative to the repo root).
DEFAULT_LISTS = {"train": "output/digits/data/train_list.txt",
                 "test": "output/digits/data/test_list.txt"}

TRAIN_RE = re.compile(r"\] Iteration (\d+)(?: \([\d.]+ iter/s, [\d.]+s/\d+ iters\))?, loss = (\S+)")
TEST_START_RE = re.compile(r"\] Iteration (\d+), Testing net")
TEST_LOSS_RE = re.compile(r"Test net output #\d+: loss = (\S+)")
LR_RE = re.compile(r"\] Iteration (\d+), lr = (\S+)")
SNAPSHOT_RE = re.compile(r"Snapshotting to binary proto file (\S+)")


def caffe_bin():
    return os.path.join(REPO, ".venv", "bin", "caffe")


def prototxt_path(variant, kind):
    if variant not in VARIANTS:
        raise ValueError("unknown variant %r, expected one of %s" % (variant, ", ".join(VARIANTS)))
    return os.path.join(PROTOTXT_DIR, "%s_%s.prototxt" % (variant, kind))


def solver_field(variant, key):
    """The value text of a top-level field of the committed solver, or None."""
    with open(prototxt_path(variant, "solver")) as f:
        m = re.search(r"^%s:\s*([^#\n]*)" % re.escape(key), f.read(), re.M)
    return m.group(1).strip() if m else None


def set_field(text, key, value):
    """Set a top-level ``key: value`` line of a solver prototxt (appended if missing)."""
    line = "%s: %s" % (key, value)
    pattern = re.compile(r"^%s:.*$" % re.escape(key), re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    return text.rstrip("\n") + "\n" + line + "\n"


def prepare_run(variant, run_dir, data_dir, seed=None, **solver_fields):
    """Write solver.prototxt + train_val.prototxt into run_dir -> solver path.

    solver_fields (e.g. max_iter=300, snapshot=100) override the committed solver.
    """
    run_dir = os.path.abspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(prototxt_path(variant, "train_val")) as f:
        net = f.read()
    for split, rel in DEFAULT_LISTS.items():
        if '"%s"' % rel not in net:
            raise ValueError("%s: source %s not found" % (prototxt_path(variant, "train_val"), rel))
        list_file = os.path.abspath(os.path.join(data_dir, "%s_list.txt" % split))
        net = net.replace('"%s"' % rel, '"%s"' % list_file)
    net_path = os.path.join(run_dir, "train_val.prototxt")
    with open(net_path, "w") as f:
        f.write(net)
    with open(prototxt_path(variant, "solver")) as f:
        solver = f.read()
    solver = set_field(solver, "net", '"%s"' % net_path)
    solver = set_field(solver, "snapshot_prefix", '"%s"' % os.path.join(run_dir, "snap"))
    if seed is not None:
        solver = set_field(solver, "random_seed", int(seed))
    for key, value in solver_fields.items():
        solver = set_field(solver, key, value)
    solver_path = os.path.join(run_dir, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(solver)
    return solver_path


class ProgressFilter:
    """Caffe log line -> short progress text, or None for the glog noise.

    Keeps training-loss lines at multiples of ``train_every``, every test loss (with its
    iteration), the end of optimization, resumes and errors.
    """

    def __init__(self, train_every=1):
        self.train_every = train_every
        self.testing_iter = None

    def __call__(self, line):
        m = TRAIN_RE.search(line)
        if m:
            if int(m.group(1)) % self.train_every:
                return None
            return "iter %5s  train loss %s" % (m.group(1), m.group(2))
        m = TEST_START_RE.search(line)
        if m:
            self.testing_iter = m.group(1)
            return None
        m = TEST_LOSS_RE.search(line)
        if m:
            return "iter %5s  test loss  %s" % (self.testing_iter, m.group(1))
        if ("Optimization Done" in line and "solver.cpp" in line) or "stopped early" in line \
                or "Resuming from" in line:
            return line.split("] ", 1)[-1].strip()
        if re.match(r"^[FE]\d{4}", line) or "Error" in line or "Traceback" in line:
            return line.rstrip()
        return None


def caffe_env():
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")    # runs go in parallel, one core each
    env["GLOG_logtostderr"] = "1"                  # log to the pipe only, no /tmp/caffe.bin.* files
    env["GLOG_minloglevel"] = "0"                  # INFO lines carry the losses (pycaffe users set 2)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def train(solver_path, log_path, snapshot=None, on_progress=None, progress_every=1, extra_args=()):
    """Run ``caffe train --solver ...`` (from the repo root), tee the log to log_path.

    on_progress(text) gets the filtered progress lines (training loss every
    progress_every iterations, see ProgressFilter). Returns the exit code.
    With snapshot=X.solverstate, the run resumes from it; the log is appended.
    """
    cmd = [caffe_bin(), "train", "--solver", solver_path]
    if snapshot:
        cmd += ["--snapshot", snapshot]
    cmd += list(extra_args)
    with open(log_path, "a" if snapshot else "w") as log:
        log.write("# %s\n" % " ".join(cmd))
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=caffe_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        progress = ProgressFilter(progress_every)
        for line in proc.stdout:
            log.write(line)
            if on_progress is not None:
                text = progress(line)
                if text:
                    on_progress(text)
        return proc.wait()


def parse_log(text):
    """Caffe log text -> {"train": [(iter, loss)], "test": [(iter, loss)], "lr": [(iter, lr)],
    "snapshots": [caffemodel paths]}. A resumed run's repeated iterations keep the last value."""
    train, test, lr, snaps = {}, {}, {}, []
    testing_iter = None
    for line in text.splitlines():
        m = TRAIN_RE.search(line)
        if m:
            train[int(m.group(1))] = float(m.group(2))
            continue
        m = TEST_START_RE.search(line)
        if m:
            testing_iter = int(m.group(1))
            continue
        m = TEST_LOSS_RE.search(line)
        if m and testing_iter is not None:
            test[testing_iter] = float(m.group(1))
            testing_iter = None
            continue
        m = LR_RE.search(line)
        if m:
            lr[int(m.group(1))] = float(m.group(2))
            continue
        m = SNAPSHOT_RE.search(line)
        if m and m.group(1) not in snaps:
            snaps.append(m.group(1))
    return {"train": sorted(train.items()), "test": sorted(test.items()),
            "lr": sorted(lr.items()), "snapshots": snaps}


def snapshot_iter(path):
    m = re.search(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$", path)
    return int(m.group(1)) if m else None


def list_snapshots(run_dir, ext="caffemodel"):
    """[(iter, path)] of the run's snapshots, by iteration."""
    out = []
    for name in os.listdir(run_dir):
        if name.endswith("." + ext):
            it = snapshot_iter(name)
            if it is not None:
                out.append((it, os.path.join(run_dir, name)))
    return sorted(out)


def main(argv=None):
    p = argparse.ArgumentParser(description="Train one multi-label digits variant with caffe train.")
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--data", default=os.path.join(REPO, "output", "digits", "data"))
    p.add_argument("--run-dir", default=None)
    p.add_argument("--seed", type=int, default=None, help="solver random_seed")
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--snapshot", default=None, help="X.solverstate to resume from")
    args = p.parse_args(argv)
    run_dir = args.run_dir or os.path.join(REPO, "output", "digits", "runs", args.variant)
    fields = {"max_iter": args.max_iter} if args.max_iter else {}
    solver = prepare_run(args.variant, run_dir, args.data, seed=args.seed, **fields)
    rc = train(solver, os.path.join(run_dir, "train.log"), snapshot=args.snapshot,
               on_progress=lambda t: print("[%s] %s" % (args.variant, t), flush=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
