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
import sys

from softmax_multilabel_layer.tools.train import caffe_env, list_snapshots, parse_log, set_solver_field
from softmax_multilabel_layer.tools.train import train as caffe_train

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTOTXT_DIR = os.path.join(REPO, "prototxt", "digits")
VARIANTS = ("softmax_multilabel", "sigmoid_native", "sigmoid_focal", "sigmoid_asl", "zlpr", "two_way")
LOSS_NAMES = {
    "softmax_multilabel": "SoftmaxMultilabelLoss (ours, 1/M targets)",
    "sigmoid_native": "SigmoidCrossEntropyLoss (Caffe native)",
    "sigmoid_focal": "SigmoidMultilabelLoss (ours, focal gamma=2)",
    "sigmoid_asl": "SigmoidMultilabelLoss (ours, ASL gamma_neg=4 gamma_pos=0 clip=0.05)",
    "zlpr": "ZLPRLoss (ours, Su et al. 2022)",
    "two_way": "TwoWayLoss (ours, Kobayashi 2023, tp=4 tn=1)",
}
# Paths the committed train_val prototxts use (relative to the repo root).
DEFAULT_LISTS = {"train": "output/digits/data/train_list.txt",
                 "test": "output/digits/data/test_list.txt"}


def caffe_bin():
    """The Caffe executable, <repo>/.venv/bin/caffe (the wrapper ``make setup`` writes)."""
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
    solver = set_solver_field(solver, "net", '"%s"' % net_path)
    solver = set_solver_field(solver, "snapshot_prefix", '"%s"' % os.path.join(run_dir, "snap"))
    if seed is not None:
        solver = set_solver_field(solver, "random_seed", int(seed))
    for key, value in solver_fields.items():
        solver = set_solver_field(solver, key, value)
    solver_path = os.path.join(run_dir, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(solver)
    return solver_path


def train(solver_path, log_path, snapshot=None, on_progress=None, progress_every=1, extra_args=()):
    """``caffe train`` of a run (softmax_multilabel_layer.tools.train.train) from the repo root, with
    <repo>/.venv/bin/caffe: the committed prototxts' relative paths are the repo root's."""
    return caffe_train(solver_path, log_path, snapshot=snapshot, on_progress=on_progress,
                       progress_every=progress_every, extra_args=extra_args, cwd=REPO, caffe=caffe_bin())


# Shared with the other examples through the package; named here for the demo's callers and tests.
__all__ = ["LOSS_NAMES", "REPO", "VARIANTS", "caffe_bin", "caffe_env", "list_snapshots", "parse_log",
           "prepare_run", "set_solver_field", "train"]


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
