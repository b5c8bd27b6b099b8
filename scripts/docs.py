#!/usr/bin/env python
"""make docs: the benchmark figures and the sample `evaluate` output in the docs, written from committed results.

    .venv/bin/python scripts/docs.py                 rewrite the generated blocks from docs/results/
    .venv/bin/python scripts/docs.py --check         exit 1 if a doc's block differs from docs/results/ (a test runs it)
    .venv/bin/python scripts/docs.py --take output/bench
        keep a fresh `make bench` run: write the figures the docs use (no local paths) to docs/results/bench.json,
        then rewrite the blocks
    .venv/bin/python scripts/docs.py --capture-evaluate
        run the documented `evaluate` sample (digits data, `caffe train` of the softmax variant with one BLAS
        thread, then `softmax-multilabel evaluate --snapshots`; a few minutes) and keep its output in
        docs/results/evaluate_digits.json, then rewrite the blocks

Each figure sits between ``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME -->`` lines
(``softmax_multilabel_layer.tools.docblocks``), with the machine, its load and the date beside it. The
examples' tables are written the same way by their own scripts (examples/multilabel_digits/readme_tables.py,
examples/yeast/yeast_report.py); `make docs` runs them all.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any

from bench.image_data import THROUGHPUT_TARGET, TRAIN_TARGET

from softmax_multilabel_layer.tools.docblocks import sync_blocks, write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
BENCH = os.path.join(RESULTS, "bench.json")
SAMPLE = os.path.join(RESULTS, "evaluate_digits.json")
GENERATOR = "scripts/docs.py"

# Loss layers in the README's speed table: (result key, column title, the Caffe layer it is divided by).
LOSS_COLUMNS = [("sigmoid_bce", "BCE", "caffe_sigmoid"), ("sigmoid_focal", "focal γ=2", "caffe_sigmoid"),
                ("zlpr", "ZLPR", "caffe_sigmoid"), ("two_way", "two-way", "caffe_sigmoid"),
                ("softmax_dense", "softmax 1/M", "caffe_softmax")]
DOC_SIZES = ("256x1000", "64x17000")

# The documented sample: every step a user runs, from the repository root.
SAMPLE_STEPS = [
    [".venv/bin/python", "examples/multilabel_digits/digits_data.py"],
    ["mkdir", "-p", "output/digits/softmax_multilabel", "output/sample"],
    [".venv/bin/caffe", "train", "--solver", "prototxt/digits/softmax_multilabel_solver.prototxt"],
]
SAMPLE_COMMAND = [".venv/bin/softmax-multilabel", "evaluate", "--net",
                  "prototxt/digits/softmax_multilabel_train_val.prototxt", "--snapshots",
                  "output/digits/softmax_multilabel", "--iters", "20", "--rule", "mass:0.9",
                  "--json", "output/sample/metrics.json", "--per-class", "output/sample/classes.csv",
                  "--thresholds-out", "output/sample/thresholds.json"]


# ---------------------------------------------------------------- keeping results

def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _public(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``recorded`` entry without the local output folder (``--out DIR``) in its command."""
    if not rec:
        return rec
    words = shlex.split(rec.get("command", ""))
    while "--out" in words:
        del words[words.index("--out"):words.index("--out") + 2]
    return dict(rec, command=shlex.join(words))


def _anchor_sections(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each anchor's dict in a ``benchmark.json`` by its name: the harness makes the first anchor's dict the top
    level and nests the others under their names; each names itself in ``recorded["anchor"]`` (in a file from
    before that, the top level is the losses anchor if its runs hold per-size results, else the metrics anchor)."""
    runs = bench.get("runs") or [{}]
    top = (bench.get("recorded") or {}).get("anchor") or ("losses" if "results" in runs[0] else "metrics")
    nested = {k: v for k, v in bench.items() if isinstance(v, dict) and "recorded" in v}
    return dict(nested, **{top: bench})


def bench_summary(folder: str) -> dict[str, Any]:
    """The figures the docs use, from the ``benchmark.json`` and ``image_data.json`` of a ``make bench`` run."""
    with open(os.path.join(folder, "benchmark.json")) as f:
        bench = json.load(f)
    out: dict[str, Any] = {}
    sections = _anchor_sections(bench)
    if sections.get("losses", {}).get("runs"):
        bench = sections["losses"]
        rows = []
        for run in bench["runs"]:
            for res in run["results"]:
                rows.append({"size": res["size"], "threads": run["threads_label"], "dispatch": run["dispatch_label"],
                             "simd": run["environment"]["simd_kind"],
                             "median_ms": {k: m["median_ms"] for k, m in res["methods"].items()},
                             "cpu_ms": {k: m.get("cpu_median_ms") for k, m in res["methods"].items()}})
        out["losses"] = {"recorded": _public(bench.get("recorded")), "reps": bench.get("reps"), "rows": rows,
                         "targets": [_pick(t, ("target", "size", "threads", "simd", "ratio", "limit", "status"))
                                     for t in bench.get("targets", [])]}
    m = sections.get("metrics")
    if m:
        if m.get("runs"):
            out["metrics"] = {"recorded": _public(m.get("recorded")),
                              "runs": [_pick(r, ("size", "dtype", "simd", "dispatch", "reps", "input_mb", "rows",
                                                 "total_speedup", "sklearn", "numpy")) for r in m["runs"]]}
        if m.get("hashtag"):          # kept apart: a later run without --metrics-hashtag leaves it in place
            out["metrics_hashtag"] = dict(m["hashtag"], recorded=_public(m.get("recorded")))
    path = os.path.join(folder, "image_data.json")
    if os.path.exists(path):
        with open(path) as f:
            img = json.load(f)
        img["recorded"] = _public(img.get("recorded"))
        out["image_data"] = _pick(img, ("recorded", "images", "threads", "rounds", "batches", "train_iters",
                                        "images_per_s", "throughput_ratio", "train_ms", "train_ratio"))
    path = os.path.join(folder, "image_list.json")
    if os.path.exists(path):
        with open(path) as f:
            lst = json.load(f)
        out["image_list"] = {"recorded": _public(lst.get("recorded")), "sizes": lst["sizes"]}
    return out


def capture_evaluate() -> dict[str, Any]:
    """Run the documented sample from the repository root (one BLAS thread, so it is bit-identical on rerun)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    load_before = [round(v, 2) for v in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for step in SAMPLE_STEPS:
        if step[1].endswith("digits_data.py") and os.path.exists(os.path.join(ROOT, "output/digits/data/test.h5")):
            continue
        print("$ " + shlex.join(step), flush=True)
        subprocess.run(step, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    print("$ " + shlex.join(SAMPLE_COMMAND), flush=True)
    done = subprocess.run(SAMPLE_COMMAND, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return {"recorded": {"date": started, "load_before": load_before,
                         "load_after": [round(v, 2) for v in os.getloadavg()], "env": "OPENBLAS_NUM_THREADS=1"},
            "steps": [shlex.join(s) for s in SAMPLE_STEPS], "command": shlex.join(SAMPLE_COMMAND),
            "stdout": done.stdout}


# ---------------------------------------------------------------- the blocks

def _when(rec: dict[str, Any] | None, conditions: bool = True) -> str:
    """Machine, date and load of a run; with ``conditions``, also the SIMD kind and BLAS threads it ran with."""
    if not rec:
        return "when and under what load: not recorded"
    cpu = rec.get("cpu") or {}
    machine = "%s, %s CPUs, " % (cpu.get("model", "?"), rec.get("cpu_count", "?")) if cpu else ""
    if conditions and rec.get("simd"):
        threads = (rec.get("threads") or {}).get("OPENBLAS_NUM_THREADS")
        machine += "numpy SIMD %s (native), OPENBLAS_NUM_THREADS=%s, " % (rec["simd"], threads or "unset")
    return "%smeasured %s at load average %.1f to %.1f (1 min, at start and end)" % (
        machine, rec["date"], rec["load_before"][0], rec["load_after"][0])


def _ratio(x: float | None) -> str:
    return "-" if x is None else "%.3f" % x


def losses_block(losses: dict[str, Any]) -> str:
    """README: each loss layer's time as a fraction of Caffe's C++ layer, per size and SIMD kind, 1 BLAS thread."""
    rec = losses.get("recorded") or {}
    rows = [r for r in losses["rows"] if r["threads"] == "1" and r["size"] in DOC_SIZES]
    if not rows:
        raise SystemExit("%s: docs/results/bench.json has no %s row at 1 BLAS thread: keep a make bench run "
                         "with its default sizes (--take)" % (GENERATOR, " or ".join(DOC_SIZES)))
    head = "| N x C, numpy SIMD | %s | blog loop layer ms (÷ softmax 1/M) |" % " | ".join(
        "%s / %s" % (title, "`SoftmaxWithLoss`" if base == "caffe_softmax" else "`SigmoidCrossEntropyLoss`")
        for _, title, base in LOSS_COLUMNS)
    lines = [head, "|---|" + "---:|" * (len(LOSS_COLUMNS) + 1)]
    for r in sorted(rows, key=lambda r: (DOC_SIZES.index(r["size"]), r["simd"] != "AVX-512")):
        ms = r["median_ms"]
        cells = [_ratio(ms[k] / ms[base]) if k in ms and base in ms else "-" for k, _, base in LOSS_COLUMNS]
        blog = ms.get("blog")
        cells.append("%.0f (%.0fx)" % (blog, blog / ms["softmax_dense"]) if blog else "-")
        lines.append("| %s, %s | %s |" % (r["size"].replace("x", " x "), r["simd"], " | ".join(cells)))
    targets = [t for t in losses.get("targets", []) if t.get("threads") == "1" and t.get("status") != "not measured"]
    failed = ["%s at %s, %s (%.3f)" % (t["target"], t["size"], t["simd"], t["ratio"])
              for t in targets if t["status"] != "PASS"]
    lines += ["", "Median of %s runs each, OPENBLAS_NUM_THREADS=1; %s; `%s`. Targets met: %d of %d%s." % (
        losses.get("reps", "?"), _when(rec, conditions=False), rec.get("command", "?"),
        len(targets) - len(failed), len(targets), "; missed: " + "; ".join(failed) if failed else "")]
    return "\n".join(lines)


def metrics_block(metrics: dict[str, Any]) -> str:
    """docs/evaluate.md: each metric's speed-up over scikit-learn, per score dtype (and SIMD kind if recorded)."""
    runs = metrics["runs"]
    keys = ["%s%s" % (r["dtype"], ", " + r["simd"] if r.get("simd") else "") for r in runs]
    lines = ["| metric | %s |" % " | ".join("ours s / scikit-learn s, %s" % k for k in keys),
             "|---|" + "---:|" * len(runs)]
    names = [row["metric"] for row in runs[0]["rows"]]
    for name in names:
        cells = []
        for r in runs:
            row = next(x for x in r["rows"] if x["metric"] == name)
            cells.append("%.3f / %.3f = **%.1fx**" % (row["ours_s"], row["sklearn_s"], row["speedup"]))
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    lines.append("| all of the above | %s |" % " | ".join("%.1fx" % r["total_speedup"] for r in runs))
    below = ["%s (%s)" % (row["metric"], k)
             for r, k in zip(runs, keys, strict=True) for row in r["rows"] if row["speedup"] < 5]
    diff = max(row["abs_diff"] for r in runs for row in r["rows"])
    lines += ["", "%s (samples x classes), ours the median of %s runs, scikit-learn %s; largest |ours - scikit-learn| "
              "%.1e; below 5x: %s; %s." % (runs[0]["size"].replace("x", " x "), runs[0].get("reps", "?"),
                                          runs[0].get("sklearn", "?"), diff, ", ".join(below) or "none",
                                          _when(metrics.get("recorded"), conditions=len(runs) <= 2))]
    if any(r.get("simd") == "AVX2" for r in runs) and any(r.get("simd") == "AVX-512" for r in runs):
        lines[-1] += (" The AVX2 columns ran in a fresh process with numpy's AVX-512 dispatch switched off "
                      "(NPY_DISABLE_CPU_FEATURES), OPENBLAS_NUM_THREADS=1.")
    return "\n".join(lines)


def hashtag_block(h: dict[str, Any]) -> str:
    """docs/evaluate.md: `evaluate` at hashtag scale: peak RSS against the scores' size, and each metric's time."""
    lines = ["| size | scores | `evaluate` wall | peak RSS | RSS / scores |", "|---|---:|---:|---:|---:|",
             "| %s | %.2f GB | %.0f s | %.2f GB | %.2fx |" % (
                 h["size"].replace("x", " x "), h["scores_gb"], h["evaluate_s"], h["evaluate_peak_rss_gb"],
                 h["rss_over_scores"]),
             "", "| metric, in one process at %s | s |" % h["size"].replace("x", " x "), "|---|---:|"]
    lines += ["| %s | %.1f |" % (name, s) for name, s in h["metric_s"].items()]
    rec = h.get("recorded")
    lines += ["", "`%s`; %s." % ((rec or {}).get("command", "?"), _when(rec))]
    return "\n".join(lines)


def image_data_block(img: dict[str, Any]) -> str:
    """docs/data.md: the image data layer against Caffe's ``ImageData``."""
    rec = img.get("recorded") or {}
    return "\n".join([
        "| measure | ours | Caffe `ImageData` | ours / Caffe | target | met |", "|---|---:|---:|---:|---|---|",
        "| images/s, %d decode threads (median of %d rounds of %d batches) | %.0f | %.0f | %.2fx | >= %.1fx | %s |" % (
            img["threads"], img["rounds"], img["batches"], img["images_per_s"]["ours"],
            img["images_per_s"]["caffe"], img["throughput_ratio"], THROUGHPUT_TARGET,
            "yes" if img["throughput_ratio"] >= THROUGHPUT_TARGET else "**no**"),
        "| `caffe train` ms/iteration, small net (best of the runs of %d iterations) | %.1f | %.1f | %.2fx | "
        "<= %.1fx | %s |" % (img["train_iters"], img["train_ms"]["ours"], img["train_ms"]["caffe"],
                             img["train_ratio"], TRAIN_TARGET,
                             "yes" if img["train_ratio"] <= TRAIN_TARGET else "**no**"),
        "", "%d JPEGs; %s; `%s`." % (img["images"], _when(rec), rec.get("command", "?"))])


def image_list_block(lst: dict[str, Any]) -> str:
    """docs/data.md: parsing a large list, ours against Caffe's ``ImageData`` (time and memory per line)."""
    lines = ["| lines | parser | s | lines/s | RSS added, B/line | beyond the file, B/line | peak, B/line |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in lst["sizes"]:
        for key, label, size in (("ours", "ours (`parse_image_list`)", row["file_bytes"]),
                                 ("caffe", "Caffe `ImageData` (net set-up)", row["caffe_file_bytes"])):
            if key in row:
                m, n = row[key], row["lines"]
                lines.append("| {:,} | {} | {:.2f} | {:,.0f} | {:.0f} | {:.0f} | {:.0f} |".format(
                    n, label, m["seconds"], n / m["seconds"], m["rss_added"] / n, (m["rss_added"] - size) / n,
                    m["peak_added"] / n))
    rec = lst.get("recorded") or {}
    lines += ["", "List files of %s MB (ours; 1 to 3 labels a line) and %s MB (Caffe's one-label copy); %s; `%s`." % (
        ", ".join("%.1f" % (r["file_bytes"] / 1e6) for r in lst["sizes"]),
        ", ".join("%.1f" % (r["caffe_file_bytes"] / 1e6) for r in lst["sizes"]), _when(rec, conditions=False),
        rec.get("command", "?"))]
    return "\n".join(lines)


def sample_block(sample: dict[str, Any]) -> str:
    """docs/evaluate.md: the sample `evaluate` run, its output as captured."""
    rec = sample["recorded"]
    command = sample["command"].replace(".venv/bin/softmax-multilabel", "softmax-multilabel")
    wrapped = command.replace(" --snapshots", " \\\n    --snapshots").replace(" --json", " \\\n    --json")
    return "\n".join(["Run from the repository root after %s, with %s (%s at load %.1f):" % (
        ", ".join("`%s`" % s for s in sample["steps"]), rec["env"], rec["date"], rec["load_before"][0]),
        "", "```", "$ " + wrapped, sample["stdout"].rstrip("\n"), "```"])


def expected_blocks(bench: dict[str, Any], sample: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """{doc path: {block name: body}} from the committed results."""
    blocks: dict[str, dict[str, str]] = {}
    if "losses" in bench:
        blocks.setdefault("README.md", {})["bench-losses"] = losses_block(bench["losses"])
    if "metrics" in bench:
        blocks.setdefault("docs/evaluate.md", {})["bench-metrics"] = metrics_block(bench["metrics"])
    if "metrics_hashtag" in bench:
        blocks.setdefault("docs/evaluate.md", {})["bench-hashtag"] = hashtag_block(bench["metrics_hashtag"])
    if sample:
        blocks.setdefault("docs/evaluate.md", {})["evaluate-sample"] = sample_block(sample)
    if "image_data" in bench:
        blocks.setdefault("docs/data.md", {})["bench-image-data"] = image_data_block(bench["image_data"])
    if "image_list" in bench:
        blocks.setdefault("docs/data.md", {})["bench-image-list"] = image_list_block(bench["image_list"])
    return blocks


def _load(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--check", action="store_true", help="only check that the docs agree with docs/results/")
    p.add_argument("--take", metavar="DIR", help="a make bench output folder to keep in docs/results/bench.json")
    p.add_argument("--capture-evaluate", action="store_true", help="run the evaluate sample and keep its output")
    args = p.parse_args(argv)
    if args.check and (args.take or args.capture_evaluate):
        p.error("--check writes nothing: give it alone")
    os.makedirs(RESULTS, exist_ok=True)
    if args.take:
        summary = _load(BENCH) or {}
        summary.update(bench_summary(args.take))
        write_atomic(BENCH, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if args.capture_evaluate:
        write_atomic(SAMPLE, json.dumps(capture_evaluate(), indent=1, sort_keys=True) + "\n")
    blocks = expected_blocks(_load(BENCH) or {}, _load(SAMPLE))
    return sync_blocks(blocks, GENERATOR, "docs/results/", check=args.check, root=ROOT)


if __name__ == "__main__":
    sys.exit(main())
