"""Smoke run of the image data section of scripts/benchmark.py (tiny sizes; no timing assertions)."""
import argparse
import json
import os
import subprocess
import sys

import pytest

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
    """The list-parsing anchor, run by make bench's entry point on a small list: registered in ANCHORS, both
    parsers measured, its files written, no other anchor run."""
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--anchors", "image_list",
           "--list-lines", "3k", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "image_list.json").read_text())
    row = report["sizes"][0]
    assert row["lines"] == 3000 and row["ours"]["lines"] == row["caffe"]["lines"] == 3000
    assert row["ours"]["seconds"] > 0 and row["caffe"]["seconds"] > 0
    text = (tmp_path / "image_list.md").read_text()
    assert "| 3000 | ours (`parse_image_list`) |" in text and "| 3000 | Caffe `ImageData` (net set-up) |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_list.json", "image_list.md"]


def test_image_list_sizes_and_default():
    """--list-lines: k/M suffixes, a comma list, the 1M default, and a clear error for a malformed size."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from bench import image_list
    assert image_list.list_sizes("1M,10M") == [1_000_000, 10_000_000]
    assert image_list.list_sizes("3k, 250") == [3000, 250]
    parser = argparse.ArgumentParser()
    image_list.add_arguments(parser)
    args = parser.parse_args([])
    assert image_list.list_sizes(args.list_lines) == [1_000_000] and image_list.selected(args)
    assert not image_list.selected(parser.parse_args(["--list-lines", "none"]))
    for bad in ("0", "1G", "", "1.5M", "-3"):
        with pytest.raises(ValueError, match="--list-lines takes a comma list of positive line counts"):
            image_list.list_sizes(bad)
    with pytest.raises(SystemExit):
        image_list.check(parser, parser.parse_args(["--list-lines", "ten"]))
