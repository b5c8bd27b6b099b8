#!/usr/bin/env python
"""Benchmark of the loss layers inside real ``caffe.Net``s on the CPU (``make bench``).

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
* ``blog``: ``BlogSoftmaxLossLayer`` from ``tests/blog_softmax_loss_layer.py``, a faithful
  transcription of the 2018 blog's Python loop layer (fewer repetitions: ``--blog-reps``), 2-D sizes only;
* ``floor``: plain numpy, one ``np.exp`` pass plus one copy over N x C, the least a
  softmax loss forward + backward must touch.

The comparison runs in a fresh subprocess of this script for each thread setting and each SIMD dispatch:
``OPENBLAS_NUM_THREADS=1`` and the library default (the variable unset; on this machine 2 threads), so
thread-count effects are visible; and numpy's native dispatch and ``no-avx512``
(``NPY_DISABLE_CPU_FEATURES`` set to numpy's AVX-512 targets), so an AVX-512 CPU also shows how an
AVX2-only CPU fares (numpy's float32 ``log1p``, ``tanh`` and ``power`` are SIMD only with AVX-512). Each
row also gives the largest error of the layer's gradient against float64 math on the same float32 inputs. Writes
``benchmark.md`` and ``benchmark.json`` to ``--out`` (default ``output/bench``).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from softmax_multilabel_layer.losses.cpu import numpy_cpu_features

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
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
    ("blog", "2018 blog loop layer"),
    ("floor", "floor: np.exp + copy over N x C"),
]


# ---------------------------------------------------------------- set-up helpers

def import_caffe():
    """Import pycaffe; if the venv's .pth is missing, fall back to the cached build (scripts/install_caffe.sh)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    for path in (ROOT, os.path.join(ROOT, "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        import caffe
    except ImportError:
        try:
            root = subprocess.run(["bash", os.path.join(HERE, "install_caffe.sh"), sys.executable, "--print-root"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            root = ""
        if root and os.path.isdir(os.path.join(root, "python", "caffe")):
            sys.path.insert(0, os.path.join(root, "python"))
        try:
            import caffe
        except ImportError as exc:
            raise SystemExit("benchmark: cannot import caffe (%s); run `make setup` first" % exc) from None
    caffe.set_mode_cpu()
    return caffe


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
    return None


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


def summarize(times):
    """Statistics of (wall, CPU) time pairs: wall-clock median, quartiles and minimum; the CPU-time median.

    The CPU time (this process, all its threads) leaves out the time the process waits for a core, so on a
    shared machine it shows the work done when the wall-clock figures are inflated by other processes.
    """
    wall = [t for t, _ in times]
    ordered = sorted(wall)
    q = len(ordered)
    return {"median_ms": statistics.median(wall) * 1e3, "min_ms": ordered[0] * 1e3,
            "p25_ms": ordered[q // 4] * 1e3, "p75_ms": ordered[(3 * q) // 4] * 1e3, "reps": q,
            "cpu_median_ms": statistics.median(c for _, c in times) * 1e3}


# ---------------------------------------------------------------- environment report

def cpu_model():
    """The CPU model name and whether the CPU itself has AVX2 and AVX-512F (from /proc/cpuinfo on Linux)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def simd_kind(enabled):
    """"AVX-512" when numpy dispatches to AVX-512 (SKX), "AVX2" when only AVX2, else the best found."""
    if "AVX512_SKX" in enabled:
        return "AVX-512"
    if "AVX2" in enabled:
        return "AVX2"
    return enabled[-1] if enabled else "unknown"


def environment():
    enabled, _ = numpy_cpu_features()
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "cpu": cpu_model(), "simd_kind": simd_kind(enabled),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                   "NPY_DISABLE_CPU_FEATURES")}}
    try:
        # numpy >= 1.25; its type stub still says show_config() takes no argument and returns None.
        config: dict[str, Any] = cast(Callable[..., dict[str, Any]], np.show_config)(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
        simd = config.get("SIMD Extensions", {})
        info["numpy_simd_build"] = {"baseline": simd.get("baseline"), "found": simd.get("found")}
    except Exception as exc:                                  # older numpy: no mode="dicts"
        info["numpy_blas"] = {"error": repr(exc)}
    info["numpy_cpu_features_enabled"], info["numpy_cpu_dispatch"] = enabled, numpy_cpu_features()[1]
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: pool.get(k) for k in ("user_api", "internal_api", "prefix", "filepath",
                                                         "version", "num_threads", "threading_layer",
                                                         "architecture")} for pool in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


# ---------------------------------------------------------------- worker: one thread configuration

def run_worker(args):
    """Time every case of each size in interleaved rounds (one iteration of each case per round).

    Interleaving spreads any change in machine load (other processes on the
    two cores) evenly over the cases, so the ratios stay meaningful. The slow
    blog layer takes part in the first ``--blog-reps`` rounds only.
    """
    caffe = import_caffe()
    sizes = parse_sizes(args.sizes)
    results = []
    load_before = os.getloadavg()
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
            times: dict[str, list[float]] = {key: [] for key in list(nets) + ["floor"]}
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
    env["load_average_1_5_15min"] = {"start": [round(v, 2) for v in load_before],
                                     "end": [round(v, 2) for v in os.getloadavg()]}
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
}


def _ratio(med, a, b):
    return med[a] / med[b] if a in med and b in med and med[b] > 0 else None


TARGETS = [
    # name, ratio key, limit, "le" (ratio <= limit) or "ge", sizes
    ("ours softmax <= 0.33x Caffe SoftmaxWithLoss", "softmax_vs_caffe_softmax", 0.33, "le", TARGET_SIZES),
    ("ours softmax <= 2x floor", "softmax_vs_floor", 2.0, "le", TARGET_SIZES),
    ("ours softmax >= 300x faster than the blog layer", "blog_over_softmax", 300.0, "ge", TARGET_SIZES),
    ("ours sigmoid (BCE) <= 0.5x Caffe SigmoidCrossEntropyLoss", "sigmoid_vs_caffe_sigmoid", 0.5, "le",
     TARGET_SIZES),
    ("ours sigmoid (focal, gamma=2) <= 1.0x Caffe SigmoidCrossEntropyLoss", "focal_vs_caffe_sigmoid", 1.0, "le",
     TARGET_SIZES),
    ("indices (K=3) faster than dense", "indices_vs_dense", 1.0, "lt", ((64, 17000),)),
]


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


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.*f" % (digits, value)


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


def markdown(report):
    lines = ["# Loss layer benchmark (forward + backward in a caffe.Net, CPU)", ""]
    lines.append("Command: `%s`. Median of %d repetitions after %d warm-up iterations (blog layer: %d after 1), "
                 "the cases of one size timed in interleaved rounds; times in ms; `x Caffe SM` = time / Caffe "
                 "SoftmaxWithLoss time, `x floor` = time / floor time. Every case is one `net.forward(); "
                 "net.backward()` of a net with Input layers and the loss layer (force_backward, propagate_down only "
                 "to the scores, as in training); the floor is "
                 "plain numpy: `np.exp(s, out=buf); np.copyto(d, s)` over N x C."
                 % (report["command"], report["reps"], report["warmup"], min(report["blog_reps"], report["reps"])))
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
                    row["size"], label, _fmt(s["median_ms"]), _fmt(s["p25_ms"]), _fmt(s["p75_ms"]),
                    _fmt(s["cpu_median_ms"]),
                    _fmt(s.get("x_caffe_softmax")), _fmt(s.get("x_floor")),
                    "%.6g" % s["loss"] if "loss" in s else "-",
                    "%.2e (%.2e)" % (s["grad_max_abs_error"], s["grad_max_abs"]) if "grad_max_abs_error" in s
                    else "-"))
        lines.append("")
        lines.append("| size | ours SM / Caffe SM | ours SM / floor | blog / ours SM (speed-up) | "
                     "ours sigmoid / Caffe sigmoid | focal / Caffe sigmoid | indices / dense |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for row in run["results"]:
            r = row["ratios"]
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                row["size"], _fmt(r["softmax_vs_caffe_softmax"]), _fmt(r["softmax_vs_floor"]),
                _fmt(r["blog_over_softmax"]), _fmt(r["sigmoid_vs_caffe_sigmoid"]),
                _fmt(r["focal_vs_caffe_sigmoid"]), _fmt(r["indices_vs_dense"])))
        lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| target | size | OPENBLAS_NUM_THREADS | numpy SIMD | measured ratio | limit | status | "
                 "ratio of CPU times |")
    lines.append("|---|---|---|---|---:|---:|---|---:|")
    for c in report["targets"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c["target"], c["size"], c["threads"], "%s (%s)" % (c["simd"], c["dispatch"]), _fmt(c["ratio"]),
            _fmt(c["limit"], 2), c["status"], _fmt(c.get("cpu_ratio"))))
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


# ---------------------------------------------------------------- metrics vs scikit-learn (issue 15)

METRICS_SIZE = "20000x1000"


def metrics_cases(y, s, predicted):
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


def _timed(fn, reps):
    times, value = [], None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _peak_mb(fn):
    """Peak memory allocated during fn() (numpy arrays included: numpy reports to tracemalloc), in MB."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def metrics_benchmark(size=METRICS_SIZE, reps=3, seed=0):
    """Time and peak memory of the package's metrics and scikit-learn side by side on one trained-like
    input: N x C float32 softmax probabilities, ~1% positives plus one per sample, scores correlated with labels."""
    sys.path.insert(0, ROOT)
    n, c = (int(v) for v in size.lower().split("x"))
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.01
    y[np.arange(n), rng.integers(0, c, n)] = True
    z = rng.standard_normal((n, c), dtype=np.float32) + np.float32(2.0) * y
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    from softmax_multilabel_layer.evaluation.rules import predict_labels
    predicted = predict_labels(s, "mass:0.5")
    rows = []
    for name, ours, theirs in metrics_cases(y, s, predicted):
        t_ours, v_ours = _timed(ours, reps)
        t_sk, v_sk = _timed(theirs, 1)
        rows.append({"metric": name, "ours_s": t_ours, "sklearn_s": t_sk, "speedup": t_sk / t_ours,
                     "ours_peak_mb": _peak_mb(ours), "sklearn_peak_mb": _peak_mb(theirs),
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


def metrics_markdown(result):
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


def run_parent(args):
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
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--worker-out", out,
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
    report = {"command": args.command or " ".join(["python", "scripts/benchmark.py"] + sys.argv[1:]),
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
    if args.metrics_size != "none":
        report["metrics"] = metrics_benchmark(args.metrics_size, args.metrics_reps)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report) + (metrics_markdown(report["metrics"]) if "metrics" in report else "")
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(text)
    print(text)
    print("benchmark: wrote %s and %s" % (os.path.join(args.out, "benchmark.md"),
                                          os.path.join(args.out, "benchmark.json")), file=sys.stderr)


# ---------------------------------------------------------------- image data layer throughput (issue 14)

IMAGE_SIZE, IMAGE_CROP, IMAGE_BATCH, IMAGE_MEAN = 256, 224, 32, (104, 117, 123)


def write_bench_images(folder, count, num_classes=20, seed=0):
    """``count`` 256x256 JPEGs (smooth random colour fields with fine noise, ~20 KB each, like photos) and
    two lists of them: ours (1-3 labels an image) and ImageData's (the first label)."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ours, single = [], []
    for i in range(count):
        low = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
        img = cv2.resize(low, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 20, img.shape).astype(np.uint8))
        path = os.path.join(folder, "img_%05d.jpg" % i)
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels = rng.choice(num_classes, size=int(rng.integers(1, 4)), replace=False)
        ours.append("%s %s\n" % (path, " ".join(str(c) for c in labels)))
        single.append("%s %d\n" % (path, labels[0]))
    lists = os.path.join(folder, "ours.txt"), os.path.join(folder, "imagedata.txt")
    for path, lines in zip(lists, (ours, single), strict=True):
        with open(path, "w") as f:
            f.writelines(lines)
    return lists


def image_data_layers(lists, threads, label_format="dense"):
    """The two data layers on the same images: ours (Python) and Caffe's C++ ImageData, same transform."""
    params = {"source": lists[0], "batch_size": IMAGE_BATCH, "num_classes": 20, "crop_size": IMAGE_CROP,
              "mirror": True, "mean_value": list(IMAGE_MEAN), "threads": threads, "shuffle": True, "seed": 1}
    if label_format == "indices":       # N x 1 class indices: the same label blob shape as ImageData's
        params.update(label_format="indices", max_labels=1, source=lists[1])
    ours = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
            'module: "softmax_multilabel_layer.data" layer: "MultilabelImageDataLayer" param_str: \'%s\' } }\n'
            % json.dumps(params))
    caffe_layer = ('layer { name: "data" type: "ImageData" top: "data" top: "label" image_data_param { '
                   'source: "%s" batch_size: %d shuffle: true } transform_param { crop_size: %d mirror: true %s } }\n'
                   % (lists[1], IMAGE_BATCH, IMAGE_CROP, " ".join("mean_value: %d" % m for m in IMAGE_MEAN)))
    return {"ours": ours, "caffe": caffe_layer}


def time_data_layer(caffe, path, batches, warmup):
    """Images per second of one data-layer net: a fresh net, ``warmup`` forwards, then ``batches`` timed."""
    net = caffe.Net(path, caffe.TRAIN)
    try:
        for _ in range(warmup):
            net.forward()
        start = time.perf_counter()
        for _ in range(batches):
            net.forward()
        return batches * IMAGE_BATCH / (time.perf_counter() - start)
    finally:
        layer = net.layers[0]
        if hasattr(layer, "close"):       # pycaffe never frees a Python layer: stop its threads now
            layer.close()
        del net


SMALL_NET = """layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 7 stride: 4 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "scores"
  inner_product_param { num_output: 20 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "scores" bottom: "label" top: "loss" }
"""


def train_iteration_ms(workdir, name, data_layer, iterations, warmup=5):
    """Mean ms per `caffe train` iteration after ``warmup`` iterations, from the glog timestamps of the loss
    lines (display: 1)."""
    import re
    net = os.path.join(workdir, "train_%s.prototxt" % name)
    with open(net, "w") as f:
        f.write(data_layer + SMALL_NET)
    solver = os.path.join(workdir, "solver_%s.prototxt" % name)
    with open(solver, "w") as f:
        f.write('net: "%s"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: "fixed"\nmax_iter: %d\ndisplay: %d\n'
                'snapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n' % (net, warmup + iterations, 1))
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    done = subprocess.run([os.path.join(ROOT, ".venv", "bin", "caffe"), "train", "--solver", solver],
                          capture_output=True, text=True, env=env, cwd=workdir, timeout=1800)
    if done.returncode != 0:
        raise SystemExit("benchmark: caffe train (%s) failed:\n%s" % (name, done.stderr[-3000:]))
    stamps = []
    for line in done.stderr.splitlines():
        m = re.match(r"I\d+ (\d+):(\d+):([\d.]+) .*\] Iteration (\d+)(?: \(.*\))?, loss = ", line)
        if m:
            h, mi, sec, it = int(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4))
            stamps.append((it, h * 3600 + mi * 60 + sec))
    first, last = [s for s in stamps if s[0] >= warmup][0], stamps[-1]
    if last[0] <= first[0]:
        raise SystemExit("benchmark: no iteration timings in the caffe train log (%s)" % name)
    return 1e3 * (last[1] - first[1]) / (last[0] - first[0])


def run_image_data(args):
    """Our MultilabelImageDataLayer against Caffe's ImageData on the same JPEGs; returns a report dict.

    Throughput: rounds alternate between the two layers, each round a fresh net (so no layer prefetches
    while the other is timed), ``--image-batches`` timed forwards after a warm-up that empties the
    prefetch queue. Training: `caffe train` of the same small net (conv 7x7/4, pool, fc, SoftmaxWithLoss)
    fed by either layer, ms per iteration from the log (ours gives N x 1 class indices, ImageData's shape).
    """
    caffe = import_caffe()
    threads = int(args.image_threads)
    report = {"cpu": cpu_model()["model"], "cpu_count": os.cpu_count(), "images": args.image_count, "threads": threads,
              "rounds": args.image_rounds, "batches": args.image_batches, "train_iters": args.train_iters,
              "load_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="bench_images_") as tmp:
        lists = write_bench_images(os.path.join(tmp, "img"), args.image_count)
        nets = {}
        for key, layer in image_data_layers(lists, threads).items():
            nets[key] = os.path.join(tmp, "data_%s.prototxt" % key)
            with open(nets[key], "w") as f:
                f.write(layer)
        rates: dict[str, list[float]] = {"ours": [], "caffe": []}
        for _ in range(args.image_rounds):
            for key in ("ours", "caffe"):
                rates[key].append(time_data_layer(caffe, nets[key], args.image_batches, warmup=6))
                print("  [image data] %-5s %7.0f images/s" % (key, rates[key][-1]), file=sys.stderr, flush=True)
        report["images_per_s"] = {k: statistics.median(v) for k, v in rates.items()}
        report["images_per_s_all"] = rates
        report["throughput_ratio"] = report["images_per_s"]["ours"] / report["images_per_s"]["caffe"]
        train: dict[str, list[float]] = {"ours": [], "caffe": []}
        if args.train_iters > 0:
            layers = image_data_layers(lists, threads, label_format="indices")
            for _ in range(args.train_runs):
                for key in ("ours", "caffe"):
                    train[key].append(train_iteration_ms(tmp, key, layers[key], args.train_iters))
                    print("  [caffe train] %-5s %7.1f ms/iteration" % (key, train[key][-1]), file=sys.stderr,
                          flush=True)
            report["train_ms"] = {k: min(v) for k, v in train.items()}
            report["train_ms_all"] = train
            report["train_ratio"] = report["train_ms"]["ours"] / report["train_ms"]["caffe"]
    report["load_end"] = list(os.getloadavg())
    return report


def image_data_markdown(r, command):
    lines = ["# Image data layer benchmark: MultilabelImageDataLayer vs Caffe's ImageData", ""]
    lines.append("Command: `%s`. CPU: %s, %d CPUs. %d JPEGs of %dx%d, crop %d, mirror, mean_value %s, batch %d, "
                 "TRAIN phase, shuffle; ours with %d decode threads, ImageData with its one prefetch thread. "
                 "Load average at start %s, at end %s." % (
                     command, r["cpu"], r["cpu_count"], r["images"], IMAGE_SIZE, IMAGE_SIZE, IMAGE_CROP,
                     list(IMAGE_MEAN), IMAGE_BATCH, r["threads"], [round(v, 2) for v in r["load_start"]],
                     [round(v, 2) for v in r["load_end"]]))
    lines.append("")
    lines.append("| measure | ours | Caffe ImageData | ours / Caffe | target | status |")
    lines.append("|---|---:|---:|---:|---|---|")
    ips = r["images_per_s"]
    lines.append("| images/s (median of %d rounds of %d batches) | %.0f | %.0f | %.2fx | >= 1.0x | %s |" % (
        r["rounds"], r["batches"], ips["ours"], ips["caffe"], r["throughput_ratio"],
        "PASS" if r["throughput_ratio"] >= 1.0 else "FAIL"))
    if "train_ms" in r:
        t = r["train_ms"]
        lines.append("| caffe train ms/iteration, small net (best of %d runs of %d iterations) | %.1f | %.1f | %.2fx "
                     "| <= 1.1x | %s |" % (len(r["train_ms_all"]["ours"]), r["train_iters"], t["ours"], t["caffe"],
                                          r["train_ratio"], "PASS" if r["train_ratio"] <= 1.1 else "FAIL"))
    lines.append("")
    lines.append("Every round: images/s ours %s, Caffe %s." % (
        [round(v) for v in r["images_per_s_all"]["ours"]], [round(v) for v in r["images_per_s_all"]["caffe"]]))
    lines.append("")
    return "\n".join(lines)


def run_image_data_section(args):
    """Run the image data comparison and write image_data.md / image_data.json to --out."""
    report = run_image_data(args)
    command = args.command or " ".join(["python", "scripts/benchmark.py"] + sys.argv[1:])
    text = image_data_markdown(report, command)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "image_data.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "image_data.md"), "w") as f:
        f.write(text)
    print(text)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    parser.add_argument("--out", default=os.path.join(ROOT, "output", "bench"), help="output folder")
    parser.add_argument("--skip-image-data", action="store_true", help="leave out the image data layer comparison")
    parser.add_argument("--only-image-data", action="store_true", help="run only the image data layer comparison")
    parser.add_argument("--image-count", type=int, default=256, help="JPEGs in the image data comparison")
    parser.add_argument("--image-rounds", type=int, default=5, help="alternating rounds per data layer")
    parser.add_argument("--image-batches", type=int, default=20, help="timed batches per round")
    parser.add_argument("--image-threads", type=int, default=2, help="our layer's decode threads (default 2)")
    parser.add_argument("--train-iters", type=int, default=40, help="timed caffe train iterations (0 = skip)")
    parser.add_argument("--train-runs", type=int, default=3, help="caffe train runs per data layer (best is kept)")
    parser.add_argument("--metrics-size", default=METRICS_SIZE,
                        help="NxC of the metrics vs scikit-learn comparison, or none (default %(default)s)")
    parser.add_argument("--metrics-reps", type=int, default=3, help="timed runs of our metrics (default 3)")
    parser.add_argument("--command", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--threads-label", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--dispatch-label", default="native", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps < 1 or args.blog_reps < 1 or args.warmup < 0:
        parser.error("--reps and --blog-reps must be >= 1, --warmup >= 0")
    if args.worker:
        run_worker(args)
    else:
        if not args.only_image_data:
            run_parent(args)
        if not args.skip_image_data:
            run_image_data_section(args)


if __name__ == "__main__":
    main()
