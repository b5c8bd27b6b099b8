"""Smoke run of the image data section of scripts/benchmark.py (tiny sizes; no timing assertions)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_image_data_section(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--only-image-data", "--image-count", "40",
           "--image-rounds", "1", "--image-batches", "2", "--train-iters", "2", "--train-runs", "1",
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "image_data.json").read_text())
    assert set(report["images_per_s"]) == {"ours", "caffe"} and min(report["images_per_s"].values()) > 0
    assert report["throughput_ratio"] > 0 and report["train_ratio"] > 0
    assert report["cpu"] and report["cpu_count"] >= 1
    text = (tmp_path / "image_data.md").read_text()
    assert "| images/s (median of 1 rounds of 2 batches) |" in text
    assert "caffe train ms/iteration, small net (best of 1 runs of 2 iterations)" in text
    assert not (tmp_path / "benchmark.json").exists()        # --only-image-data: no loss benchmark


def test_image_list_anchor(tmp_path):
    """scripts/bench/image_list.py (the list-parsing anchor) on a small list: both parsers measured."""
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench", "image_list.py"), "--list-lines", "3000",
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "image_list.json").read_text())
    row = report["sizes"][0]
    assert row["lines"] == 3000 and row["ours"]["lines"] == row["caffe"]["lines"] == 3000
    assert row["ours"]["seconds"] > 0 and row["caffe"]["seconds"] > 0
    text = (tmp_path / "image_list.md").read_text()
    assert "| 3000 | ours (`parse_image_list`) |" in text and "| 3000 | Caffe `ImageData` (net set-up) |" in text
