"""Smoke run of the end-to-end anchor of scripts/benchmark.py (``--anchors train``): tiny sizes, no timing
assertions; the two nets are the image example's net with our layers and the all-C++ recipe."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layers(net: str) -> list[tuple[str, str]]:
    """(name, type) of every layer of a prototxt text, in order."""
    return re.findall(r'name: "([^"]+)"\s+type: "([^"]+)"', net)


def test_train_anchor(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--anchors", "train", "--e2e-images", "130",
           "--e2e-iters", "2", "--e2e-warmup", "1", "--e2e-runs", "1", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_e2e.json", "train_e2e.md"]   # only this anchor
    report = json.loads((tmp_path / "train_e2e.json").read_text())
    assert min(report["ms"].values()) > 0 and report["ratio"] == report["ms"]["ours"] / report["ms"]["caffe"]
    assert len(report["load_start"]) == 3 and len(report["load_end"]) == 3 and report["convert_imageset_s"] > 0
    ours, cpp = layers(report["nets"]["ours"]), layers(report["nets"]["caffe"])
    assert ours[0] == ("data", "Python") and ours[-1] == ("loss", "Python")
    assert "MultilabelImageDataLayer" in report["nets"]["ours"]
    assert "SoftmaxMultilabelLossLayer" in report["nets"]["ours"]
    assert cpp[:3] == [("data", "Data"), ("labels", "HDF5Data"), ("silence", "Silence")]
    assert cpp[-1] == ("loss", "SigmoidCrossEntropyLoss")
    assert ours[1:-1] == cpp[3:-1] and len(ours) == 11          # the same conv/pool/fc layers between
    for net in report["nets"].values():                         # batch 64 of 28x28 crops, as the example
        assert re.search(r"batch_size\W+64", net) and re.search(r"crop_size\W+28", net)
    text = (tmp_path / "train_e2e.md").read_text()
    assert "| ms/iteration, best of 1 runs |" in text and "| <= 1.0x |" in text and "Load average" in text
