"""Smoke run of scripts/benchmark.py with tiny sizes and few repetitions: it writes the table and the JSON.

No timing assertions: only that every case ran, the ratios and targets are
filled in, and the losses of our layer agree across formats and thread settings.
"""
import json
import os
import subprocess
import sys

import pytest

from softmax_multilabel_layer.losses.cpu import numpy_cpu_features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    cmd = [sys.executable, SCRIPT, "--sizes", "6x9,3x4x2x2", "--reps", "2", "--warmup", "1", "--blog-reps", "1",
           "--skip-image-data",
           "--out", str(out), "--metrics-size", "300x20", "--metrics-reps", "1", "--metrics-hashtag", "400x300"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(out / "benchmark.json") as f:
        data = json.load(f)
    return data, (out / "benchmark.md").read_text(), done.stdout


def has_avx512():
    enabled, targets = numpy_cpu_features()
    return any(t.startswith("AVX512") and t in enabled for t in targets)


def test_writes_json_with_both_thread_settings_and_dispatches(report):
    data, _, _ = report
    dispatches = ["native", "no-avx512"] if has_avx512() else ["native"]
    assert [(run["threads_label"], run["dispatch_label"]) for run in data["runs"]] == [
        (t, d) for d in dispatches for t in ("1", "default")]
    assert (data["dispatch_note"] is None) == has_avx512()
    for run in data["runs"]:
        env = run["environment"]
        assert env["env"]["OPENBLAS_NUM_THREADS"] == ("1" if run["threads_label"] == "1" else None)
        disabled = env["env"]["NPY_DISABLE_CPU_FEATURES"]
        if run["dispatch_label"] == "native":
            assert disabled is None
        else:                                         # numpy really stopped dispatching to AVX-512
            assert "AVX512F" in disabled and env["simd_kind"] == "AVX2"
            assert "AVX512F" not in env["numpy_cpu_features_enabled"]
        assert env["cpu"]["model"]
        assert "OPENBLAS_CORETYPE" in env["env"] and "OPENBLAS_L2_SIZE" in env["env"]
        assert env["numpy_blas"]
        sizes = [row["size"] for row in run["results"]]
        assert sizes == ["6x9", "3x4x2x2"]
        flat, spatial = run["results"]
        assert set(flat["methods"]) == {"softmax_dense", "softmax_indices", "caffe_softmax", "sigmoid_bce",
                                        "sigmoid_focal", "caffe_sigmoid", "zlpr", "two_way", "blog", "floor"}
        assert set(spatial["methods"]) == {"softmax_dense", "caffe_softmax", "sigmoid_bce", "sigmoid_focal",
                                           "caffe_sigmoid", "zlpr", "two_way", "floor"}
        for row in run["results"]:
            for key, stats in row["methods"].items():
                assert stats["median_ms"] > 0
                assert stats["reps"] == (1 if key == "blog" else 2)
                assert stats["x_caffe_softmax"] > 0 and stats["x_floor"] > 0
        m = flat["methods"]
        # the same labels in three layers give the same loss
        assert m["softmax_indices"]["loss"] == pytest.approx(m["softmax_dense"]["loss"], rel=1e-5)
        assert m["blog"]["loss"] == pytest.approx(m["softmax_dense"]["loss"], rel=1e-4)
        assert m["sigmoid_bce"]["loss"] == pytest.approx(m["caffe_sigmoid"]["loss"], rel=1e-4)
        for key in ("softmax_dense", "softmax_indices", "caffe_softmax", "sigmoid_bce", "sigmoid_focal",
                    "caffe_sigmoid", "zlpr", "two_way"):   # against float64 math: float32 rounding, not a wrong formula
            assert 0 <= m[key]["grad_max_abs_error"] < 1e-6 < m[key]["grad_max_abs"], key
        for key in ("zlpr", "two_way"):     # the 4-D case too: the class axis 1, one sample per pixel
            stats = spatial["methods"][key]
            assert 0 <= stats["grad_max_abs_error"] < 1e-6 < stats["grad_max_abs"], key
        assert "grad_max_abs_error" not in m["blog"] and "grad_max_abs_error" not in m["floor"]
        assert flat["ratios"]["blog_over_softmax"] > 0
        assert flat["ratios"]["indices_vs_dense"] > 0
        for key, stats in m.items():                  # CPU time of the process: positive, and the ratios use it
            assert stats["cpu_median_ms"] > 0, key
        assert flat["cpu_ratios"]["sigmoid_vs_caffe_sigmoid"] == pytest.approx(
            m["sigmoid_bce"]["cpu_median_ms"] / m["caffe_sigmoid"]["cpu_median_ms"])
    # our layers' losses do not depend on the BLAS thread count (bit for bit, per dispatch), and the report's
    # flag says whether every method's did
    same = []
    for dispatch in dispatches:
        one, default = [run for run in data["runs"] if run["dispatch_label"] == dispatch]
        for row_one, row_default in zip(one["results"], default["results"], strict=True):
            for key, stats in row_one["methods"].items():
                same.append(stats.get("loss") == row_default["methods"][key].get("loss"))    # the floor has none
                if key.startswith(("softmax", "sigmoid", "zlpr", "two_way")):
                    assert stats["loss"] == row_default["methods"][key]["loss"], (row_one["size"], key)
    assert data["loss_identical_across_threads"] is all(same)


def test_targets_listed_and_not_measured_at_other_sizes(report):
    data, _, _ = report
    targets = data["targets"]
    assert len(targets) == len(data["runs"]) * 13     # 6 targets x 2 sizes + 1, per run
    assert {t["status"] for t in targets} == {"not measured"}
    assert {t["cpu_ratio"] for t in targets} == {None}


def test_writes_markdown_table(report):
    _, text, stdout = report
    assert text.startswith("# Loss layer benchmark")
    assert "| 6x9 | ours softmax (dense labels) |" in text
    assert "| 3x4x2x2 | Caffe SoftmaxWithLoss (single label) |" in text
    assert "| 6x9 | ours ZLPR |" in text and "| 3x4x2x2 | ours two-way (tp 4, tn 1) |" in text
    assert "## Targets" in text and "## Environment" in text
    assert "OPENBLAS_NUM_THREADS=1" in text
    assert "- CPU: " in text and "numpy SIMD AVX" in text
    assert "ours sigmoid (focal, gamma=2) <= 1.0x Caffe SigmoidCrossEntropyLoss" in text
    # the floor ratio is shown as information, never as a PASS/FAIL target (the target was retired)
    assert "| ours SM / floor |" in text and "information, not a target" in text
    assert "2x floor |" not in text and all("floor" not in t["target"] for t in report[0]["targets"])
    assert "numpy BLAS" in text
    assert text in stdout


def test_metrics_section(report):
    data, md, _ = report
    runs = data["metrics"]["runs"]
    dispatches = ["native", "no-avx512"] if has_avx512() else ["native"]
    assert [(r["dispatch"], r["dtype"]) for r in runs] == [(d, t) for d in dispatches    # both score precisions
                                                           for t in ("float32", "float64")]
    assert [r["simd"] for r in runs][2:] == ["AVX2", "AVX2"][:len(runs) - 2]     # the worker saw AVX-512 switched off
    assert ("dispatch_note" in data["metrics"]) != has_avx512()
    for metrics in runs:
        assert metrics["size"] == "300x20" and len(metrics["rows"]) == 10
        for row in metrics["rows"]:
            assert row["abs_diff"] < 1e-9, row                # the same values as scikit-learn
            assert row["ours_s"] > 0 and row["sklearn_s"] > 0
            assert (row["ours_peak_mb"] is None) == (metrics["dispatch"] == "no-avx512"), row
    assert "## Metrics over a test set" in md and "| average_precision macro |" in md
    assert "scores float32 softmax" in md and "scores float64 softmax" in md
    hashtag = data["metrics"]["hashtag"]
    assert hashtag["size"] == "400x300" and hashtag["scores_gb"] == 400 * 300 * 4 / 1e9
    assert hashtag["evaluate_s"] > 0 and hashtag["evaluate_peak_rss_gb"] > 0 and len(hashtag["metric_s"]) == 7
    assert "Hashtag scale, 400x300" in md
