"""Anchor ``metrics`` of ``make bench``: ``softmax_multilabel_layer.evaluation.metrics`` against scikit-learn.

Time and peak memory (tracemalloc) of each metric, ours and scikit-learn's, on one trained-like input
(``--metrics-size``, default 20,000 samples x 1,000 classes), with float32 and float64 scores
(``--metrics-dtypes``), and the largest difference of their values; with numpy's native SIMD dispatch and,
on an AVX-512 CPU, again in a fresh process with AVX-512 switched off (``--metrics-dispatch``, as the losses
anchor does: a speed claim must hold on AVX2-only CPUs too; that run skips the memory columns, which do not
depend on the dispatch). With ``--metrics-hashtag NxC``
(off by default: minutes and gigabytes) it also runs ``softmax-multilabel evaluate`` on saved arrays of
that size (random float32 scores, 1-5 positives per sample, the hashtag setting of Mahajan et al.) in a
child process and reports its wall time and peak RSS against the size of the scores, and times the
top-k family and the ranking metrics at that size in this process.
The section is appended to ``benchmark.md`` and nested under ``"metrics"`` in ``benchmark.json``.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.harness import cpu_model, peak_mb, simd_kind, timed
from softmax_multilabel_layer.losses.cpu import numpy_cpu_features

NAME = "metrics"
OUTPUT = "benchmark"


METRICS_SIZE = "20000x1000"


def metrics_cases(y: np.ndarray, s: np.ndarray,
                  predicted: np.ndarray) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, ours, scikit-learn) callables on the same inputs; scikit-learn's coverage_error is ours + 1."""
    import warnings

    from sklearn import metrics as skm

    from softmax_multilabel_layer.evaluation import metrics as M

    def sk(fn, *a, **k):
        def call():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(*a, **k)
        return call
    return [
        ("average_precision macro", lambda: M.average_precision(y, s), sk(skm.average_precision_score, y, s)),
        ("average_precision micro", lambda: M.average_precision(y, s, "micro"),
         sk(skm.average_precision_score, y, s, average="micro")),
        ("average_precision samples", lambda: M.average_precision(y, s, "samples"),
         sk(skm.average_precision_score, y, s, average="samples")),
        ("label_ranking_average_precision", lambda: M.label_ranking_average_precision(y, s),
         sk(skm.label_ranking_average_precision_score, y, s)),
        ("ranking_loss", lambda: M.ranking_loss(y, s), sk(skm.label_ranking_loss, y, s)),
        ("coverage (+1)", lambda: M.coverage(y, s) + 1, sk(skm.coverage_error, y, s)),
        ("hamming_loss", lambda: M.hamming_loss(y, predicted), sk(skm.hamming_loss, y, predicted)),
        ("f1 macro", lambda: M.f1(y, predicted, "macro"), sk(skm.f1_score, y, predicted, average="macro")),
        ("f1 samples", lambda: M.f1(y, predicted, "samples"), sk(skm.f1_score, y, predicted, average="samples")),
        ("exact_match", lambda: M.exact_match(y, predicted), sk(skm.accuracy_score, y, predicted)),
    ]


def metrics_benchmark(size: str = METRICS_SIZE, reps: int = 3, seed: int = 0,
                      dtype: str = "float32", memory: bool = True) -> dict[str, Any]:
    """Time and peak memory of the package's metrics and scikit-learn side by side on one trained-like
    input: N x C softmax probabilities (``dtype``), ~1% positives plus one per sample, scores correlated
    with labels. ``memory=False`` leaves out the peak-memory runs (None)."""
    n, c = (int(v) for v in size.lower().split("x"))
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.01
    y[np.arange(n), rng.integers(0, c, n)] = True
    z = rng.standard_normal((n, c), dtype=np.float32) + np.float32(2.0) * y
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    s = s.astype(dtype)
    from softmax_multilabel_layer.evaluation.rules import predict_labels
    predicted = predict_labels(s, "mass:0.5")
    rows: list[dict[str, Any]] = []
    simd = simd_kind(numpy_cpu_features()[0])
    for name, ours, theirs in metrics_cases(y, s, predicted):
        t_ours, v_ours = timed(ours, reps)
        t_sk, v_sk = timed(theirs, 1)
        rows.append({"metric": name, "ours_s": t_ours, "sklearn_s": t_sk, "speedup": t_sk / t_ours,
                     "meets_5x": t_sk / t_ours >= 5.0,
                     "ours_peak_mb": peak_mb(ours) if memory else None,
                     "sklearn_peak_mb": peak_mb(theirs) if memory else None,
                     "abs_diff": abs(float(v_ours) - float(v_sk))})
        print("benchmark metrics (%s, %s): %-32s ours %.3f s, scikit-learn %.3f s, %.1fx: %s"
              % (dtype, simd, name, t_ours, t_sk, t_sk / t_ours, "ok (>= 5x)" if t_sk / t_ours >= 5.0 else "BELOW 5x"),
              file=sys.stderr, flush=True)
    import sklearn
    total_ours, total_sk = sum(r["ours_s"] for r in rows), sum(r["sklearn_s"] for r in rows)
    return {"size": size, "dtype": dtype, "reps": reps, "input_mb": (y.nbytes + s.nbytes) / 2 ** 20, "rows": rows,
            "total_ours_s": total_ours, "total_sklearn_s": total_sk, "total_speedup": total_sk / total_ours,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "cpu": cpu_model()["model"], "simd": simd,
            "load": "%.1f" % os.getloadavg()[0],
            "target": {"min_speedup": 5.0, "met_total": total_sk / total_ours >= 5.0,
                       "below_target": [r["metric"] for r in rows if r["speedup"] < 5.0]}}


def hashtag_arrays(folder: str, size: str, seed: int = 0) -> tuple[str, str, int]:
    """Random float32 scores and 1-5 true labels per sample, saved as scores.npy and labels.npy (bool) in
    ``folder``, row blocks at a time; returns the two paths and the scores' size in bytes."""
    n, c = (int(v) for v in size.lower().split("x"))
    rng = np.random.default_rng(seed)
    scores = np.lib.format.open_memmap(os.path.join(folder, "scores.npy"), "w+", np.float32, (n, c))
    labels = np.lib.format.open_memmap(os.path.join(folder, "labels.npy"), "w+", np.bool_, (n, c))
    for r0 in range(0, n, 1000):
        r1 = min(r0 + 1000, n)
        scores[r0:r1] = rng.random((r1 - r0, c), dtype=np.float32)
        block = np.zeros((r1 - r0, c), bool)
        for i, m in enumerate(rng.integers(1, 6, r1 - r0)):
            block[i, rng.choice(c, m, replace=False)] = True
        labels[r0:r1] = block
    scores.flush()
    labels.flush()
    del scores, labels
    return os.path.join(folder, "scores.npy"), os.path.join(folder, "labels.npy"), n * c * 4


def hashtag_benchmark(size: str, seed: int = 0) -> dict[str, Any]:
    """``softmax-multilabel evaluate --scores --labels --json`` at ``size`` in a child process: wall time
    and peak RSS (getrusage of the child) against the scores' own size; then, in this process, the time of
    the top-k family (one_error, precision@k and recall@k for k = 1, 3, 5, one call) and of each ranking metric."""
    from softmax_multilabel_layer.evaluation import metrics as M
    with tempfile.TemporaryDirectory(prefix="bench_hashtag_") as folder:
        scores_path, labels_path, scores_bytes = hashtag_arrays(folder, size, seed)
        command = [sys.executable, "-m", "softmax_multilabel_layer.cli", "evaluate", "--scores", scores_path,
                   "--labels", labels_path, "--json", os.path.join(folder, "m.json")]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)          # this child's own peak RSS (KB on Linux)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, command)
        peak_kb = usage.ru_maxrss
        y = np.load(labels_path)
        s = np.load(scores_path)
        times = {}
        for name, fn in (("top-k family (one_error, P@1,3,5, R@1,3,5)", lambda: M.top_k_metrics(y, s, (1, 3, 5))),
                         ("precision_at_k (k=5)", lambda: M.precision_at_k(y, s, 5)),
                         ("average_precision macro", lambda: M.average_precision(y, s)),
                         ("average_precision micro", lambda: M.average_precision(y, s, "micro")),
                         ("label_ranking_average_precision", lambda: M.label_ranking_average_precision(y, s)),
                         ("ranking_loss", lambda: M.ranking_loss(y, s)),
                         ("coverage", lambda: M.coverage(y, s))):
            times[name] = timed(fn, 1)[0]
            print("benchmark metrics hashtag %s: %-40s %.2f s" % (size, name, times[name]), file=sys.stderr,
                  flush=True)
    return {"size": size, "scores_gb": scores_bytes / 1e9, "evaluate_s": wall, "evaluate_peak_rss_gb": peak_kb / 1e6,
            "rss_over_scores": peak_kb * 1e3 / scores_bytes, "metric_s": times}


def _table(result: dict[str, Any]) -> list[str]:
    lines = ["", "%s samples x classes, labels bool, scores %s softmax probabilities (%.0f MB of input), "
             "numpy SIMD %s, load average %s at the end:" % (result["size"], result["dtype"], result["input_mb"],
                                              result.get("simd", "?"), result.get("load", "?")), "",
             "| metric | ours s | scikit-learn s | speed-up | >= 5x | ours peak MB | scikit-learn peak MB | abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mb = ["-" if r[k] is None else "%.0f" % r[k] for k in ("ours_peak_mb", "sklearn_peak_mb")]
        lines.append("| %s | %.3f | %.3f | %.1fx | %s | %s | %s | %.1e |" % (
            r["metric"], r["ours_s"], r["sklearn_s"], r["speedup"], "yes" if r["speedup"] >= 5.0 else "**no**",
            mb[0], mb[1], r["abs_diff"]))
    lines.append("| **all of the above** | %.3f | %.3f | %.1fx | | | | |" % (
        result["total_ours_s"], result["total_sklearn_s"], result["total_speedup"]))
    return lines


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = []
    if runs:
        lines += _runs_section(runs, result)
    h = result.get("hashtag")
    if h:
        lines += ["", "Hashtag scale, %s (random float32 scores, 1-5 positives per sample): `softmax-multilabel "
                  "evaluate --scores --labels --json` took %.1f s with a peak RSS of %.2f GB for %.2f GB of scores "
                  "(%.2fx)." % (h["size"], h["evaluate_s"], h["evaluate_peak_rss_gb"], h["scores_gb"],
                                h["rss_over_scores"]), "", "| metric at %s | s |" % h["size"], "|---|---|"]
        lines += ["| %s | %.2f |" % (name, t) for name, t in h["metric_s"].items()]
    return "\n".join(lines) + "\n"


def _runs_section(runs: list[dict[str, Any]], result: dict[str, Any]) -> list[str]:
    first = runs[0]
    lines = ["", "## Metrics over a test set: softmax_multilabel_layer.evaluation.metrics vs scikit-learn", "",
             "Label sets for Hamming / F1 / exact match from the rule mass:0.5. Ours: median of %d runs; "
             "scikit-learn: 1 run (seconds each). Peak = extra memory allocated during the call (tracemalloc, "
             "separate run). CPU: %s; numpy %s, scikit-learn %s; load average %s at the start. |diff| = "
             "|ours - scikit-learn| (coverage compared as ours + 1). Below 5x: %s."
             % (first["reps"], first["cpu"], first["numpy"], first["sklearn"], result.get("load", "?"),
                ", ".join("%s (%s, %s)" % (m, r["dtype"], r.get("simd", "?")) for r in runs
                          for m in r["target"]["below_target"]) or "none")]
    if result.get("dispatch_note"):
        lines += ["", result["dispatch_note"] + "."]
    for r in runs:
        lines += _table(r)
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The metrics anchor's options."""
    parser.add_argument("--metrics-size", default=METRICS_SIZE,
                        help="NxC of the metrics vs scikit-learn comparison, or none (default %(default)s)")
    parser.add_argument("--metrics-reps", type=int, default=3, help="timed runs of our metrics (default 3)")
    parser.add_argument("--metrics-dtypes", default="float32,float64",
                        help="score dtypes of the comparison, comma-separated (default %(default)s)")
    parser.add_argument("--metrics-dispatch", default="native,no-avx512",
                        help="comma list of numpy SIMD settings: native and/or no-avx512 (a fresh process with "
                        "NPY_DISABLE_CPU_FEATURES set to numpy's AVX-512 targets; left out on a CPU without them)")
    parser.add_argument("--metrics-worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--metrics-hashtag", default="none", metavar="NxC",
                        help="also evaluate random arrays of this size in a child process, peak RSS and time "
                        "(e.g. 50000x17000: about 5 GB of disk and RAM, minutes); default none")


def selected(args: argparse.Namespace) -> bool:
    """``--metrics-size none`` leaves the anchor out, unless ``--metrics-hashtag`` asks for the hashtag run alone."""
    return bool(args.metrics_size != "none" or args.metrics_hashtag != "none")


def worker(args: argparse.Namespace) -> None:
    """The ``no-avx512`` runs, in the fresh process ``run`` starts (numpy reads NPY_DISABLE_CPU_FEATURES at import),
    written as JSON to ``--metrics-worker-out``."""
    import json
    runs = [dict(metrics_benchmark(args.metrics_size, args.metrics_reps, dtype=d, memory=False),
                 dispatch="no-avx512") for d in args.metrics_dtypes.split(",")]
    with open(args.metrics_worker_out, "w") as f:
        json.dump(runs, f)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`metrics_benchmark` at ``--metrics-size`` for each of ``--metrics-dtypes`` and dispatch, and
    :func:`hashtag_benchmark` at ``--metrics-hashtag`` unless it is none."""
    import json

    from bench.harness import ENTRY
    dispatches = [d.strip() for d in args.metrics_dispatch.split(",") if d.strip()]
    for d in dispatches:
        if d not in ("native", "no-avx512"):
            raise SystemExit("benchmark: --metrics-dispatch takes a comma list of native, no-avx512, got %r" % d)
    enabled, targets = numpy_cpu_features()
    avx512 = [f for f in targets if f.startswith("AVX512") and f in enabled]
    out: dict[str, Any] = {"load": "%.1f" % os.getloadavg()[0], "runs": []}
    if args.metrics_size == "none":
        dispatches = []
    if "native" in dispatches:
        out["runs"] += [dict(metrics_benchmark(args.metrics_size, args.metrics_reps, dtype=d), dispatch="native")
                        for d in args.metrics_dtypes.split(",")]
    if "no-avx512" in dispatches and not avx512:
        out["dispatch_note"] = "numpy dispatches to no AVX-512 target on this CPU: the native runs are the AVX2 kind"
    elif "no-avx512" in dispatches:
        with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
            path = os.path.join(tmp, "no_avx512.json")
            env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=" ".join(avx512))
            subprocess.run([sys.executable, ENTRY, "--worker", NAME, "--metrics-worker-out", path,
                            "--metrics-size", args.metrics_size, "--metrics-reps", str(args.metrics_reps),
                            "--metrics-dtypes", args.metrics_dtypes], env=env, check=True)
            with open(path) as f:
                out["runs"] += json.load(f)
    if args.metrics_hashtag != "none":
        out["hashtag"] = hashtag_benchmark(args.metrics_hashtag)
    return out
