"""Anchor ``losses`` of ``make bench``: the loss layers inside real ``caffe.Net``s on the CPU.

Each case is a net of ``Input`` layers feeding one loss layer, with
``force_backward: true`` and ``propagate_down: true propagate_down: false`` on the
loss layer (backward to the scores, not the labels, as in training where labels
come from a data layer); one timed iteration is ``net.forward(); net.backward()``.
The time is the median of ``--reps`` iterations after warm-up, all cases in
one process. Compared at every size:

* ``softmax_dense``: our ``SoftmaxMultilabelLossLayer``, binary labels with 1-3 positives per sample;
* ``softmax_indices``: the same labels in ``label_format: "indices"`` (K = 3), 2-D sizes only;
* ``caffe_softmax``: Caffe's C++ ``SoftmaxWithLoss`` (one label per sample, normalization BATCH_SIZE);
* ``caffe_sigmoid``: Caffe's C++ ``SigmoidCrossEntropyLoss`` on the same binary labels;
* ``sigmoid_bce`` / ``sigmoid_focal``: our ``SigmoidMultilabelLossLayer``, plain BCE and focal gamma = 2;
* ``zlpr`` / ``two_way``: our ``ZLPRLossLayer`` and ``TwoWayLossLayer`` (tp 4, tn 1) on the same binary labels;
* ``blog``: ``BlogSoftmaxLossLayer`` from ``tests/blog_softmax_loss_layer.py``, a faithful
  transcription of the 2018 blog's Python loop layer (fewer repetitions: ``--blog-reps``), 2-D sizes only;
* ``floor``: plain numpy, one ``np.exp`` pass plus one copy over N x C, the least a
  softmax loss forward + backward must touch.

The comparison runs in a fresh subprocess (``scripts/benchmark.py --worker losses``) for each thread setting
and each SIMD dispatch:
``OPENBLAS_NUM_THREADS=1`` and the library default (the variable unset; on this machine 2 threads), so
thread-count effects are visible; and numpy's native dispatch and ``no-avx512``
(``NPY_DISABLE_CPU_FEATURES`` set to numpy's AVX-512 targets), so an AVX-512 CPU also shows how an
AVX2-only CPU fares (numpy's float32 ``log1p``, ``tanh`` and ``power`` are SIMD only with AVX-512). Each
row also gives the largest error of the layer's gradient against float64 math on the same float32 inputs. Writes
``benchmark.md`` and ``benchmark.json`` to ``--out`` (default ``output/bench``).

The ratio to the floor is information, not a target: the old "ours softmax <= 2x floor" target was
retired, as the dense layer must also read the labels and write the gradient, which the floor does not.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bench.harness import ENTRY, command_line, environment, fmt, import_caffe, load_average, simd_kind, summarize
from softmax_multilabel_layer.losses.cpu import numpy_cpu_features

NAME = "losses"
OUTPUT = "benchmark"
BLOG_MODULE = "blog_softmax_loss_layer"      # tests/blog_softmax_loss_layer.py, the blog layer transcribed

DEFAULT_SIZES = "256x1000,64x17000,4096x20,32x21x14x14"
TARGET_SIZES = ((256, 1000), (64, 17000))
THREAD_CONFIGS = ("1", "default")
DISPATCH_CONFIGS = ("native", "no-avx512")
K_INDICES = 3

METHODS = [
    # key, label in the table
    ("softmax_dense", "ours softmax (dense labels)"),
    ("softmax_indices", "ours softmax (indices, K=3)"),
    ("caffe_softmax", "Caffe SoftmaxWithLoss (single label)"),
    ("sigmoid_bce", "ours sigmoid (BCE)"),
    ("sigmoid_focal", "ours sigmoid (focal, gamma=2)"),
    ("caffe_sigmoid", "Caffe SigmoidCrossEntropyLoss"),
    ("zlpr", "ours ZLPR"),
    ("two_way", "ours two-way (tp 4, tn 1)"),
    ("blog", "2018 blog loop layer"),
    ("floor", "floor: np.exp + copy over N x C"),
]

def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if item:
            dims = tuple(int(v) for v in item.split("x"))
            if len(dims) not in (2, 4) or min(dims) < 1:
                raise SystemExit("benchmark: --sizes entries are NxC or NxCxHxW, got %r" % item)
            sizes.append(dims)
    if not sizes:
        raise SystemExit("benchmark: --sizes is empty")
    return sizes


def size_name(shape):
    return "x".join(str(d) for d in shape)


def make_inputs(shape, seed=0):
    """Scores, binary labels (1-3 positives per sample), their index form, and one class per sample."""
    rng = np.random.default_rng(seed)
    n, c = shape[:2]
    spatial = shape[2:]
    scores = (rng.normal(size=shape) * 3).astype(np.float32)
    # samples = positions along every axis but the class axis, class axis moved last
    samples = int(np.prod((n,) + spatial))
    dense_last = np.zeros((samples, c), np.float32)
    indices_last = np.full((samples, K_INDICES), -1, np.float32)
    counts = rng.integers(1, min(3, c) + 1, samples)
    for i in range(samples):
        chosen = rng.choice(c, size=counts[i], replace=False)
        dense_last[i, chosen] = 1
        indices_last[i, :counts[i]] = chosen
    single = np.array([rng.choice(np.flatnonzero(row)) for row in dense_last], np.float32)

    def back(a, k):
        return np.moveaxis(a.reshape((n,) + spatial + (k,)), -1, 1).copy()

    dense = back(dense_last, c)
    indices = back(indices_last, K_INDICES)
    single = single.reshape((n, 1) + spatial) if spatial else single.reshape(n)
    return scores, dense, indices, single


def _input(name, shape):
    dims = " ".join("dim: %d" % d for d in shape)
    return 'layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n' % (name, name, dims)


def build_net(caffe, workdir, name, inputs, loss_layer):
    text = 'name: "%s"\nforce_backward: true\n' % name
    text += "".join(_input(k, v.shape) for k, v in inputs.items())
    bottoms = " ".join('bottom: "%s"' % k for k in inputs)
    # As in training, where labels come from a data layer: backward to the scores only.
    propagate = " ".join("propagate_down: %s" % ("true" if i == 0 else "false") for i in range(len(inputs)))
    text += 'layer { name: "loss" %s top: "loss" loss_weight: 1 %s %s }\n' % (bottoms, propagate, loss_layer)
    path = os.path.join(workdir, name + ".prototxt")
    with open(path, "w") as f:
        f.write(text)
    net = caffe.Net(path, caffe.TRAIN)
    for k, v in inputs.items():
        net.blobs[k].data[...] = v
    return net


def python_layer(layer, params, module="softmax_multilabel_layer.layers"):
    return ('type: "Python" python_param { module: "%s" layer: "%s" param_str: \'%s\' }'
            % (module, layer, json.dumps(params)))


def cases_for(shape):
    scores, dense, indices, single = make_inputs(shape)
    references = (scores, dense, single)
    two_d = len(shape) == 2
    cases = {
        "softmax_dense": ({"scores": scores, "labels": dense}, python_layer("SoftmaxMultilabelLossLayer", {})),
        "caffe_softmax": ({"scores": scores, "label": single},
                          'type: "SoftmaxWithLoss" loss_param { normalization: BATCH_SIZE }'),
        "sigmoid_bce": ({"scores": scores, "labels": dense}, python_layer("SigmoidMultilabelLossLayer", {})),
        "sigmoid_focal": ({"scores": scores, "labels": dense},
                          python_layer("SigmoidMultilabelLossLayer", {"gamma": 2.0})),
        "caffe_sigmoid": ({"scores": scores, "labels": dense}, 'type: "SigmoidCrossEntropyLoss"'),
        "zlpr": ({"scores": scores, "labels": dense}, python_layer("ZLPRLossLayer", {})),
        "two_way": ({"scores": scores, "labels": dense}, python_layer("TwoWayLossLayer", {})),
    }
    if two_d:
        cases["softmax_indices"] = ({"scores": scores, "labels": indices},
                                    python_layer("SoftmaxMultilabelLossLayer", {"label_format": "indices"}))
        cases["blog"] = ({"scores": scores, "labels": dense}, python_layer("BlogSoftmaxLossLayer", {}, BLOG_MODULE))
    return scores, cases, references


# ---------------------------------------------------------------- float64 references of the gradients

def _softmax64(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softplus64(z):
    return np.logaddexp(0, z)


def reference_gradient(key, scores, dense, single):
    """d loss / d scores in float64 math on the float32 inputs, for the cases whose loss is defined here.

    Softmax cases: ``normalize_targets "count"`` (t = y / M) or one label, normalized by N (batch size);
    sigmoid cases: BCE or focal (gamma = 2), normalized by N, as the benchmark's nets are configured.
    """
    s = scores.astype(np.float64)
    n = s.shape[0]
    if key in ("softmax_dense", "softmax_indices", "caffe_softmax"):
        if key == "caffe_softmax":
            t = np.zeros_like(s)
            np.put_along_axis(t, single.astype(np.int64).reshape((n, 1) + s.shape[2:]), 1.0, axis=1)
        else:
            y = dense.astype(np.float64)
            t = y / np.maximum(y.sum(axis=1, keepdims=True), 1)
        return (t.sum(axis=1, keepdims=True) * _softmax64(s) - t) / n
    if key in ("sigmoid_bce", "caffe_sigmoid", "sigmoid_focal"):
        y = dense.astype(np.float64)
        p, p_neg = np.exp(-_softplus64(-s)), np.exp(-_softplus64(s))
        dce = (1 - y) * p - y * p_neg
        if key != "sigmoid_focal":
            return dce / n
        ce = y * _softplus64(-s) + (1 - y) * _softplus64(s)
        q = y * p_neg + (1 - y) * p
        return (dce * q * q + ce * 2 * q * (1 - 2 * y) * p * p_neg) / n
    if key in ("zlpr", "two_way"):
        y = np.moveaxis(dense, 1, -1).reshape(-1, s.shape[1]) > 0         # one row per sample, classes last
        x = np.moveaxis(s, 1, -1).reshape(-1, s.shape[1])
        grad = _zlpr_grad64(x, y) * (x.shape[0] / n) if key == "zlpr" else _two_way_grad64(x, y)
        return np.moveaxis(grad.reshape(s.shape[:1] + s.shape[2:] + s.shape[1:2]), -1, 1)
    return None


def _masked_softmax64(v, keep, axis):
    """Softmax of v over the entries where keep holds, along axis (0 where a group has none)."""
    t = np.where(keep, v, -np.inf)
    top = t.max(axis=axis, keepdims=True)
    e = np.exp(t - np.where(np.isfinite(top), top, 0))
    total = e.sum(axis=axis, keepdims=True)
    return e / np.where(total > 0, total, 1), top, total


def _zlpr_grad64(x, y):
    """ZLPR: e^s / (1 + sum_neg e^s) on the negatives, -e^-s / (1 + sum_pos e^-s) on the positives, mean over rows."""
    neg = np.where(y, 0, np.exp(x))
    pos = np.where(y, np.exp(-x), 0)
    return (neg / (1 + neg.sum(1, keepdims=True)) - pos / (1 + pos.sum(1, keepdims=True))) / x.shape[0]


def _two_way_grad64(x, y, tp=4.0, tn=1.0):
    """Two-way: sigma(z) / |groups| times the soft-max weights, over the rows and the columns with a positive."""
    grad = np.zeros_like(x)
    for axis in (1, 0):
        qn, top_n, sum_n = _masked_softmax64(x / tn, ~y, axis)
        qp, top_p, sum_p = _masked_softmax64(-x / tp, y, axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = tn * (top_n + np.log(sum_n)) + tp * (top_p + np.log(sum_p))
        has = y.any(axis=axis, keepdims=True)
        z = np.where(has & (sum_n > 0), z, -np.inf)
        grad += np.exp(z - np.logaddexp(0, z)) / max(1, int(has.sum())) * (qn - qp)
    return grad


def time_net(net, reps, warmup):
    for _ in range(warmup):
        net.forward()
        net.backward()
    times = []
    for _ in range(reps):
        start, cpu_start = time.perf_counter(), time.process_time()
        net.forward()
        net.backward()
        times.append((time.perf_counter() - start, time.process_time() - cpu_start))
    return times


def floor_buffers(scores):
    """The floor's arrays, allocated once per size (as the layers keep their buffers)."""
    s = np.ascontiguousarray(scores)
    return s, np.empty_like(s), np.empty_like(s)


def time_floor(buffers, reps, warmup):
    s, buf, d = buffers
    times = []
    for i in range(warmup + reps):
        start, cpu_start = time.perf_counter(), time.process_time()
        np.exp(s, out=buf)
        np.copyto(d, s)
        if i >= warmup:
            times.append((time.perf_counter() - start, time.process_time() - cpu_start))
    return times

# ---------------------------------------------------------------- worker: one thread configuration

def worker(args: argparse.Namespace) -> None:
    """Time every case of each size in interleaved rounds (one iteration of each case per round).

    Interleaving spreads any change in machine load (other processes on the
    two cores) evenly over the cases, so the ratios stay meaningful. The slow
    blog layer takes part in the first ``--blog-reps`` rounds only.
    """
    caffe = import_caffe()
    sizes = parse_sizes(args.sizes)
    results = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_nets_") as workdir:
        for shape in sizes:
            scores, cases, references = cases_for(shape)
            row = {"size": size_name(shape), "shape": list(shape), "methods": {}}
            nets = {}
            for key, _ in METHODS:
                if key in cases and key not in args.skip:
                    inputs, layer = cases[key]
                    nets[key] = build_net(caffe, workdir, "%s_%s" % (key, row["size"]), inputs, layer)
                    time_net(nets[key], 0, 1 if key == "blog" else args.warmup)
            floor = floor_buffers(scores)
            times: dict[str, list[tuple[float, float]]] = {key: [] for key in list(nets) + ["floor"]}
            for rep in range(args.reps):
                for key, net in nets.items():
                    if key != "blog" or rep < args.blog_reps:
                        times[key] += time_net(net, 1, 0)
                times["floor"] += time_floor(floor, 1, args.warmup if rep == 0 else 0)
            for key, _ in METHODS:
                if key not in times:
                    continue
                stats = summarize(times[key])
                if key in nets:
                    net = nets[key]
                    stats["loss"] = float(np.asarray(net.blobs["loss"].data).reshape(-1)[0])
                    stats["grad_abs_sum"] = float(np.abs(net.blobs["scores"].diff).sum(dtype=np.float64))
                    reference = reference_gradient(key, *references)
                    if reference is not None:
                        stats["grad_max_abs_error"] = float(np.abs(net.blobs["scores"].diff - reference).max())
                        stats["grad_max_abs"] = float(np.abs(reference).max())
                row["methods"][key] = stats
                print("  [threads=%s %s] %-11s %-16s %10.3f ms"
                      % (args.threads_label, args.dispatch_label, row["size"], key, stats["median_ms"]),
                      file=sys.stderr, flush=True)
            del nets
            results.append(row)
    env = environment()
    env["load_average_1_5_15min"] = {"start": load_before, "end": load_average()}
    out = {"threads_label": args.threads_label, "dispatch_label": args.dispatch_label, "environment": env,
           "results": results,
           "reps": args.reps, "warmup": args.warmup, "blog_reps": min(args.blog_reps, args.reps)}
    with open(args.worker_out, "w") as f:
        json.dump(out, f, indent=1)


# ---------------------------------------------------------------- parent: run workers, compare, report

def add_ratios(run):
    for row in run["results"]:
        m = row["methods"]
        med = {k: v["median_ms"] for k, v in m.items()}
        for key, stats in m.items():
            stats["x_caffe_softmax"] = med[key] / med["caffe_softmax"] if "caffe_softmax" in med else None
            stats["x_floor"] = med[key] / med["floor"] if "floor" in med else None
        cpu = {k: v["cpu_median_ms"] for k, v in m.items()}
        for name, medians in (("ratios", med), ("cpu_ratios", cpu)):
            row[name] = {key: _ratio(medians, a, b) for key, (a, b) in RATIOS.items()}


RATIOS = {   # ratio key: (numerator, denominator)
    "softmax_vs_caffe_softmax": ("softmax_dense", "caffe_softmax"),
    "softmax_vs_floor": ("softmax_dense", "floor"),
    "blog_over_softmax": ("blog", "softmax_dense"),
    "sigmoid_vs_caffe_sigmoid": ("sigmoid_bce", "caffe_sigmoid"),
    "focal_vs_caffe_sigmoid": ("sigmoid_focal", "caffe_sigmoid"),
    "indices_vs_dense": ("softmax_indices", "softmax_dense"),
    "zlpr_vs_caffe_sigmoid": ("zlpr", "caffe_sigmoid"),
    "two_way_vs_caffe_sigmoid": ("two_way", "caffe_sigmoid"),
}


def _ratio(med, a, b):
    return med[a] / med[b] if a in med and b in med and med[b] > 0 else None


TARGETS = [
    # name, ratio key, limit, "le" (ratio <= limit) or "ge", sizes
    ("ours softmax <= 0.33x Caffe SoftmaxWithLoss", "softmax_vs_caffe_softmax", 0.33, "le", TARGET_SIZES),
    ("ours softmax >= 300x faster than the blog layer", "blog_over_softmax", 300.0, "ge", TARGET_SIZES),
    ("ours sigmoid (BCE) <= 0.5x Caffe SigmoidCrossEntropyLoss", "sigmoid_vs_caffe_sigmoid", 0.5, "le",
     TARGET_SIZES),
    ("ours sigmoid (focal, gamma=2) <= 1.0x Caffe SigmoidCrossEntropyLoss", "focal_vs_caffe_sigmoid", 1.0, "le",
     TARGET_SIZES),
    ("indices (K=3) faster than dense", "indices_vs_dense", 1.0, "lt", ((64, 17000),)),
    ("ours ZLPR <= 0.5x Caffe SigmoidCrossEntropyLoss", "zlpr_vs_caffe_sigmoid", 0.5, "le", TARGET_SIZES),
    ("ours two-way <= 0.5x Caffe SigmoidCrossEntropyLoss", "two_way_vs_caffe_sigmoid", 0.5, "le", TARGET_SIZES),
]

# The floor ratio is shown, never judged (a retired target, not a verdict).
FLOOR_NOTE = ("The floor columns (`x floor`, `ours SM / floor`) are information, not a target: the old target "
              "\"ours softmax <= 2x floor\" was retired, as the dense layer must also read the labels and write the "
              "gradient, which the floor does not.")


def evaluate_targets(runs):
    checks = []
    for run in runs:
        by_size = {tuple(row["shape"]): row for row in run["results"]}
        for name, key, limit, how, sizes in TARGETS:
            for shape in sizes:
                row = by_size.get(tuple(shape))
                value = row["ratios"].get(key) if row else None
                if value is None:
                    status = "not measured"
                elif how == "le":
                    status = "PASS" if value <= limit else "FAIL"
                elif how == "lt":
                    status = "PASS" if value < limit else "FAIL"
                else:
                    status = "PASS" if value >= limit else "FAIL"
                cpu_value = row["cpu_ratios"].get(key) if row else None
                checks.append({"target": name, "size": size_name(shape), "threads": run["threads_label"],
                               "cpu_ratio": cpu_value,
                               "dispatch": run["dispatch_label"], "simd": run["environment"]["simd_kind"],
                               "ratio": value, "limit": limit, "status": status})
    return checks


def thread_summary(env):
    pools = env.get("threadpools")
    if not isinstance(pools, list):
        return str(pools)
    return "; ".join("%s %s (%s, %s threads)" % (p.get("internal_api"), p.get("version"),
                                                  os.path.basename(p.get("filepath") or "?"), p.get("num_threads"))
                     for p in pools)


def dispatch_text(run):
    """E.g. "AVX-512 (native)" or "AVX2 (no-avx512: NPY_DISABLE_CPU_FEATURES)"."""
    label = run["dispatch_label"]
    return "%s (%s)" % (run["environment"]["simd_kind"],
                        label if label == "native" else label + ": NPY_DISABLE_CPU_FEATURES")


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Loss layer benchmark (forward + backward in a caffe.Net, CPU)", ""]
    lines.append("Command: `%s`. Median of %d repetitions after %d warm-up iterations (blog layer: %d after 1), "
                 "the cases of one size timed in interleaved rounds; times in ms; `x Caffe SM` = time / Caffe "
                 "SoftmaxWithLoss time, `x floor` = time / floor time. Every case is one `net.forward(); "
                 "net.backward()` of a net with Input layers and the loss layer (force_backward, propagate_down only "
                 "to the scores, as in training); the floor is "
                 "plain numpy: `np.exp(s, out=buf); np.copyto(d, s)` over N x C."
                 % (report["command"], report["reps"], report["warmup"], min(report["blog_reps"], report["reps"])))
    lines.append("")
    lines.append(FLOOR_NOTE)
    lines.append("")
    for run in report["runs"]:
        env = run["environment"]
        lines.append("## OPENBLAS_NUM_THREADS=%s, numpy SIMD %s" % (
            "1" if run["threads_label"] == "1" else "unset (library default)", dispatch_text(run)))
        lines.append("")
        lines.append("Thread pools: %s" % thread_summary(env))
        lines.append("")
        load = env.get("load_average_1_5_15min", {})
        lines.append("Load average (1, 5, 15 min) at start %s, at end %s on %s CPUs: other processes on the machine "
                     "slow every case and add noise when it is above ~1." % (load.get("start"), load.get("end"),
                                                                              env["cpu_count"]))
        lines.append("")
        lines.append("| size | layer | median ms | p25-p75 ms | CPU ms | x Caffe SM | x floor | loss | max abs grad "
                     "error vs float64 (max abs grad) |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in run["results"]:
            for key, label in METHODS:
                s = row["methods"].get(key)
                if s is None:
                    continue
                lines.append("| %s | %s | %s | %s-%s | %s | %s | %s | %s | %s |" % (
                    row["size"], label, fmt(s["median_ms"]), fmt(s["p25_ms"]), fmt(s["p75_ms"]),
                    fmt(s["cpu_median_ms"]),
                    fmt(s.get("x_caffe_softmax")), fmt(s.get("x_floor")),
                    "%.6g" % s["loss"] if "loss" in s else "-",
                    "%.2e (%.2e)" % (s["grad_max_abs_error"], s["grad_max_abs"]) if "grad_max_abs_error" in s
                    else "-"))
        lines.append("")
        lines.append("| size | ours SM / Caffe SM | ours SM / floor | blog / ours SM (speed-up) | "
                     "ours sigmoid / Caffe sigmoid | focal / Caffe sigmoid | indices / dense | "
                     "ZLPR / Caffe sigmoid | two-way / Caffe sigmoid |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in run["results"]:
            r = row["ratios"]
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["size"], fmt(r["softmax_vs_caffe_softmax"]), fmt(r["softmax_vs_floor"]),
                fmt(r["blog_over_softmax"]), fmt(r["sigmoid_vs_caffe_sigmoid"]),
                fmt(r["focal_vs_caffe_sigmoid"]), fmt(r["indices_vs_dense"]),
                fmt(r.get("zlpr_vs_caffe_sigmoid")), fmt(r.get("two_way_vs_caffe_sigmoid"))))
        lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| target | size | OPENBLAS_NUM_THREADS | numpy SIMD | measured ratio | limit | status | "
                 "ratio of CPU times |")
    lines.append("|---|---|---|---|---:|---:|---|---:|")
    for c in report["targets"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c["target"], c["size"], c["threads"], "%s (%s)" % (c["simd"], c["dispatch"]), fmt(c["ratio"]),
            fmt(c["limit"], 2), c["status"], fmt(c.get("cpu_ratio"))))
    lines.append("")
    lines.append("The status is decided on the wall-clock medians. The last column gives the same ratio of CPU-time "
                 "medians (time the process ran, not the time it waited for a core): where the two differ much, "
                 "other processes were competing for the cores.")
    lines.append("")
    if report.get("dispatch_note"):
        lines.append(report["dispatch_note"])
        lines.append("")
    if report.get("loss_identical_across_threads") is not None:
        lines.append("Losses identical across thread settings (per dispatch): %s"
                     % report["loss_identical_across_threads"])
        lines.append("")
    env = report["runs"][0]["environment"]
    lines.append("## Environment")
    lines.append("")
    cpu = env.get("cpu", {})
    lines.append("- CPU: %s (%s CPUs; AVX2 %s, AVX-512F %s)" % (cpu.get("model"), env["cpu_count"],
                                                              "yes" if cpu.get("avx2") else "no",
                                                              "yes" if cpu.get("avx512f") else "no"))
    lines.append("- Python %s, numpy %s, %s" % (env["python"], env["numpy"], env["platform"]))
    lines.append("- numpy BLAS: %s" % json.dumps(env.get("numpy_blas")))
    simd = env.get("numpy_simd_build") or {}
    lines.append("- numpy SIMD: baseline %s; dispatch targets built and supported by this CPU: %s" % (
        ", ".join(simd.get("baseline") or env.get("numpy_cpu_baseline", [])), ", ".join(simd.get("found") or [])))
    enabled = env.get("numpy_cpu_features_enabled")
    lines.append("- CPU features numpy detects: %s" % (", ".join(enabled) if isinstance(enabled, list) else enabled))
    for run in report["runs"]:
        lines.append("- threads=%s, dispatch %s: %s" % (run["threads_label"], dispatch_text(run),
                                                         thread_summary(run["environment"])))
        lines.append("  environment: %s" % json.dumps(run["environment"]["env"]))
    lines.append("- Caffe's C++ layers use the BLAS pycaffe links (see the thread pools above); the softmax and "
                 "sigmoid C++ loss layers are mostly element-wise loops, not BLAS calls.")
    lines.append("- The blog layer shifts `bottom[0].data` in place, as the original does; the shift leaves its "
                 "loss unchanged, so its repetitions stay comparable.")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every thread setting and dispatch in its own worker process; ratios and targets over their runs."""
    configs = [c.strip() for c in args.threads.split(",") if c.strip()]
    for c in configs:
        if c not in THREAD_CONFIGS:
            raise SystemExit("benchmark: --threads takes a comma list of %s, got %r" % (", ".join(THREAD_CONFIGS), c))
    dispatches = [d.strip() for d in args.dispatch.split(",") if d.strip()]
    for d in dispatches:
        if d not in DISPATCH_CONFIGS:
            raise SystemExit("benchmark: --dispatch takes a comma list of %s, got %r"
                             % (", ".join(DISPATCH_CONFIGS), d))
    enabled, dispatch_targets = numpy_cpu_features()
    avx512 = [f for f in dispatch_targets if f.startswith("AVX512") and f in enabled]
    dispatch_note = None
    if "no-avx512" in dispatches and not avx512:
        dispatches.remove("no-avx512")
        dispatch_note = ("numpy dispatches to no AVX-512 target on this CPU (%s), so the native runs are the "
                         "AVX2 kind; the AVX-512 kind cannot be simulated here." % simd_kind(enabled))
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        for label, dispatch in [(t, d) for d in dispatches for t in configs]:
            env = dict(os.environ)
            env.pop("NPY_DISABLE_CPU_FEATURES", None)
            if dispatch == "no-avx512":
                env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
            env.setdefault("GLOG_minloglevel", "2")
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
                env.pop(var, None)
            if label == "1":
                env["OPENBLAS_NUM_THREADS"] = "1"
                env["OMP_NUM_THREADS"] = "1"
            out = os.path.join(tmp, "run_%s_%s.json" % (label, dispatch))
            cmd = [sys.executable, ENTRY, "--worker", NAME, "--worker-out", out,
                   "--threads-label", label, "--dispatch-label", dispatch, "--sizes", args.sizes,
                   "--reps", str(args.reps), "--warmup", str(args.warmup), "--blog-reps", str(args.blog_reps)]
            for key in args.skip:
                cmd += ["--skip", key]
            print("benchmark: OPENBLAS_NUM_THREADS=%s, dispatch %s" % ("1" if label == "1" else "unset", dispatch),
                  file=sys.stderr, flush=True)
            subprocess.run(cmd, env=env, check=True)
            with open(out) as f:
                runs.append(json.load(f))
    for run in runs:
        add_ratios(run)
    report = {"command": command_line(args),
              "reps": args.reps, "warmup": args.warmup, "blog_reps": args.blog_reps, "runs": runs,
              "targets": evaluate_targets(runs), "dispatch_note": dispatch_note}
    if len(configs) > 1:       # same dispatch, different threads (another dispatch may round exp differently)
        same = True
        for dispatch in dispatches:
            group = [r for r in runs if r["dispatch_label"] == dispatch]
            for rows in zip(*(r["results"] for r in group), strict=True):
                for key in rows[0]["methods"]:
                    losses = {row["methods"].get(key, {}).get("loss") for row in rows}
                    same &= len(losses) == 1
        report["loss_identical_across_threads"] = same
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The loss anchor's options (the worker's hidden ones included)."""
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma list of NxC or NxCxHxW (default %(default)s)")
    parser.add_argument("--reps", type=int, default=25, help="timed repetitions per case (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up iterations per case (default %(default)s)")
    parser.add_argument("--blog-reps", type=int, default=3, help="repetitions of the slow blog layer")
    parser.add_argument("--threads", default=",".join(THREAD_CONFIGS),
                        help="comma list of thread settings: 1 (OPENBLAS_NUM_THREADS=1) and/or default")
    parser.add_argument("--dispatch", default=",".join(DISPATCH_CONFIGS),
                        help="comma list of numpy SIMD settings: native and/or no-avx512 (NPY_DISABLE_CPU_FEATURES "
                             "set to numpy's AVX-512 targets; left out on a CPU without them)")
    parser.add_argument("--skip", action="append", default=[], choices=[k for k, _ in METHODS if k != "floor"],
                        help="leave a layer out (repeatable)")
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--threads-label", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--dispatch-label", default="native", help=argparse.SUPPRESS)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject repetition counts that would time nothing."""
    if args.reps < 1 or args.blog_reps < 1 or args.warmup < 0:
        parser.error("--reps and --blog-reps must be >= 1, --warmup >= 0")
