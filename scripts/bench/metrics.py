"""Anchor ``metrics`` of ``make bench``: ``softmax_multilabel_layer.evaluation.metrics`` against scikit-learn.

Time and peak memory (tracemalloc) of each metric, ours and scikit-learn's, on one trained-like input
(``--metrics-size``, default 20,000 samples x 1,000 classes), and the largest difference of their values.
The section is appended to ``benchmark.md`` and nested under ``"metrics"`` in ``benchmark.json``.
"""
import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.harness import cpu_model, peak_mb, timed

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


def metrics_benchmark(size: str = METRICS_SIZE, reps: int = 3, seed: int = 0) -> dict[str, Any]:
    """Time and peak memory of the package's metrics and scikit-learn side by side on one trained-like
    input: N x C float32 softmax probabilities, ~1% positives plus one per sample, scores correlated with labels."""
    n, c = (int(v) for v in size.lower().split("x"))
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.01
    y[np.arange(n), rng.integers(0, c, n)] = True
    z = rng.standard_normal((n, c), dtype=np.float32) + np.float32(2.0) * y
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    from softmax_multilabel_layer.evaluation.rules import predict_labels
    predicted = predict_labels(s, "mass:0.5")
    rows: list[dict[str, Any]] = []
    for name, ours, theirs in metrics_cases(y, s, predicted):
        t_ours, v_ours = timed(ours, reps)
        t_sk, v_sk = timed(theirs, 1)
        rows.append({"metric": name, "ours_s": t_ours, "sklearn_s": t_sk, "speedup": t_sk / t_ours,
                     "ours_peak_mb": peak_mb(ours), "sklearn_peak_mb": peak_mb(theirs),
                     "abs_diff": abs(float(v_ours) - float(v_sk))})
        print("benchmark metrics: %-32s ours %.3f s, scikit-learn %.3f s" % (name, t_ours, t_sk), file=sys.stderr,
              flush=True)
    import sklearn
    total_ours, total_sk = sum(r["ours_s"] for r in rows), sum(r["sklearn_s"] for r in rows)
    return {"size": size, "reps": reps, "input_mb": (y.nbytes + s.nbytes) / 2 ** 20, "rows": rows,
            "total_ours_s": total_ours, "total_sklearn_s": total_sk, "total_speedup": total_sk / total_ours,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "cpu": cpu_model()["model"],
            "target": {"min_speedup": 5.0, "met_total": total_sk / total_ours >= 5.0,
                       "below_target": [r["metric"] for r in rows if r["speedup"] < 5.0]}}


def markdown(result: dict[str, Any]) -> str:
    lines = ["", "## Metrics over a test set: softmax_multilabel_layer.evaluation.metrics vs scikit-learn", "",
             "%s samples x classes (labels bool, scores float32 softmax probabilities, %.0f MB of input); label sets "
             "for Hamming / F1 / exact match from the rule mass:0.5. Ours: median of %d runs; scikit-learn: 1 run "
             "(seconds each). Peak = extra memory allocated during the call (tracemalloc, separate run). "
             "CPU: %s; numpy %s, scikit-learn %s. |diff| = |ours - scikit-learn| (coverage compared as ours + 1)."
             % (result["size"], result["input_mb"], result["reps"], result["cpu"], result["numpy"], result["sklearn"]),
             "", "| metric | ours s | scikit-learn s | speed-up | ours peak MB | scikit-learn peak MB | abs diff |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append("| %s | %.3f | %.3f | %.1fx | %.0f | %.0f | %.1e |" % (
            r["metric"], r["ours_s"], r["sklearn_s"], r["speedup"], r["ours_peak_mb"], r["sklearn_peak_mb"],
            r["abs_diff"]))
    lines.append("| **all of the above** | %.3f | %.3f | %.1fx | | | |" % (
        result["total_ours_s"], result["total_sklearn_s"], result["total_speedup"]))
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The metrics anchor's options."""
    parser.add_argument("--metrics-size", default=METRICS_SIZE,
                        help="NxC of the metrics vs scikit-learn comparison, or none (default %(default)s)")
    parser.add_argument("--metrics-reps", type=int, default=3, help="timed runs of our metrics (default 3)")


def selected(args: argparse.Namespace) -> bool:
    """``--metrics-size none`` leaves the anchor out."""
    return bool(args.metrics_size != "none")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`metrics_benchmark` at ``--metrics-size`` with ``--metrics-reps`` timed runs of ours."""
    return metrics_benchmark(args.metrics_size, args.metrics_reps)
