"""scripts/docs.py (make docs): the docs' benchmark figures and sample output agree with docs/results/."""
import copy
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import docs  # noqa: E402
from softmax_multilabel_layer.tools.docblocks import sync_blocks  # noqa: E402

REC = {"date": "2026-01-02 03:04 UTC", "load_before": [0.5, 1, 1], "load_after": [1.25, 1, 1],
       "cpu": {"model": "Some CPU"}, "cpu_count": 2, "command": "python scripts/benchmark.py"}


def committed():
    with open(docs.BENCH) as f:
        bench = json.load(f)
    sample = None
    if os.path.exists(docs.SAMPLE):
        with open(docs.SAMPLE) as f:
            sample = json.load(f)
    return bench, sample


def test_docs_agree_with_committed_results(capsys):
    assert docs.main(["--check"]) == 0, capsys.readouterr().err


def test_committed_results_have_no_local_paths():
    for path in (docs.BENCH, docs.SAMPLE):
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, path


def test_a_changed_result_is_caught(capsys):
    bench, sample = committed()
    changed = copy.deepcopy(bench)
    row = changed["losses"]["rows"][0]
    row["median_ms"]["sigmoid_bce"] *= 1.5
    blocks = docs.expected_blocks(changed, sample)
    assert sync_blocks(blocks, docs.GENERATOR, "docs/results/", check=True, root=REPO) == 1
    assert "README.md" in capsys.readouterr().err


def _row(size, simd, ms):
    return {"size": size, "threads": "1", "dispatch": "native", "simd": simd, "median_ms": ms, "cpu_ms": {}}


def test_loss_table_ratios_and_target_verdicts():
    ms = {"sigmoid_bce": 2.0, "sigmoid_focal": 4.0, "zlpr": 1.0, "two_way": 3.0, "caffe_sigmoid": 8.0,
          "softmax_dense": 1.5, "caffe_softmax": 6.0, "blog": 300.0}
    losses = {"recorded": REC, "reps": 25, "rows": [_row("64x17000", "AVX2", ms), _row("256x1000", "AVX-512", ms),
                                                   _row("64x300", "AVX-512", ms)],
              "targets": [{"target": "BCE <= 0.5x", "size": "64x17000", "threads": "1", "simd": "AVX2",
                           "ratio": 0.52, "limit": 0.5, "status": "FAIL"},
                          {"target": "BCE <= 0.5x", "size": "256x1000", "threads": "1", "simd": "AVX-512",
                           "ratio": 0.25, "limit": 0.5, "status": "PASS"}]}
    text = docs.losses_block(losses)
    lines = text.split("\n")
    assert lines[2] == "| 256 x 1000, AVX-512 | 0.250 | 0.500 | 0.125 | 0.375 | 0.250 | 300 (200x) |"
    assert lines[3].startswith("| 64 x 17000, AVX2 |")
    assert "64x300" not in text and "64 x 300" not in text
    assert "Targets met: 1 of 2; missed: BCE <= 0.5x at 64x17000, AVX2 (0.520)." in text
    assert "Some CPU, 2 CPUs, measured 2026-01-02 03:04 UTC at load average 0.5 to 1.2" in text
    with pytest.raises(SystemExit, match="256x1000"):
        docs.losses_block(dict(losses, rows=[_row("64x300", "AVX-512", ms)]))


def test_metrics_table_lists_the_metrics_below_5x():
    run = {"size": "20000x1000", "dtype": "float64", "reps": 3, "sklearn": "1.9.1", "total_speedup": 7.0,
           "rows": [{"metric": "ranking_loss", "ours_s": 0.5, "sklearn_s": 2.0, "speedup": 4.0, "abs_diff": 1e-17},
                    {"metric": "f1 macro", "ours_s": 0.1, "sklearn_s": 1.0, "speedup": 10.0, "abs_diff": 0.0}]}
    text = docs.metrics_block({"recorded": REC, "runs": [run]})
    assert "| ranking_loss | 0.500 / 2.000 = **4.0x** |" in text
    assert "below 5x: ranking_loss (float64)" in text
    assert "20000 x 1000 (samples x classes)" in text


def test_image_list_table_per_line_figures():
    lst = {"recorded": REC, "sizes": [{"lines": 1000, "file_bytes": 40000, "caffe_file_bytes": 30000,
                                       "ours": {"seconds": 0.5, "rss_added": 70000, "peak_added": 150000},
                                       "caffe": {"seconds": 0.25, "rss_added": 60000, "peak_added": 100000}}]}
    text = docs.image_list_block(lst)
    assert "| 1,000 | ours (`parse_image_list`) | 0.50 | 2,000 | 70 | 30 | 150 |" in text
    assert "| 1,000 | Caffe `ImageData` (net set-up) | 0.25 | 4,000 | 60 | 30 | 100 |" in text


def test_hashtag_table_and_a_run_without_it_keeps_it(tmp_path):
    hashtag = {"size": "50000x17000", "scores_gb": 3.4, "evaluate_s": 120.4, "evaluate_peak_rss_gb": 5.1,
               "rss_over_scores": 1.5, "metric_s": {"coverage": 2.25}}
    text = docs.hashtag_block(dict(hashtag, recorded=REC))
    assert "| 50000 x 17000 | 3.40 GB | 120 s | 5.10 GB | 1.50x |" in text
    assert "| coverage | 2.2 |" in text and "measured 2026-01-02 03:04 UTC at load average 0.5 to 1.2" in text
    run = tmp_path / "run"
    run.mkdir()
    # metrics run alone: its dict is the file's top level (the harness nests only the anchors after the first)
    metrics = {"recorded": dict(REC, anchor="metrics"), "runs": [], "hashtag": hashtag}
    (run / "benchmark.json").write_text(json.dumps(metrics))
    summary = docs.bench_summary(str(run))
    assert sorted(summary) == ["metrics_hashtag"] and summary["metrics_hashtag"]["evaluate_s"] == 120.4
    # after the losses anchor: nested under its name
    (run / "benchmark.json").write_text(json.dumps({"recorded": dict(REC, anchor="losses"), "runs": [],
                                                    "targets": [], "metrics": metrics}))
    assert docs.bench_summary(str(run))["metrics_hashtag"]["evaluate_s"] == 120.4
    # a file from before the anchors named themselves: metrics alone at the top level
    (run / "benchmark.json").write_text(json.dumps(dict(metrics, recorded=REC)))
    assert sorted(docs.bench_summary(str(run))) == ["metrics_hashtag"]
