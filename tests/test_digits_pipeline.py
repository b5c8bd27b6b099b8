"""Fast end-to-end run of the digits demo: data -> `.venv/bin/caffe train` for every loss
variant -> pycaffe evaluation of every snapshot -> results.json, results.md, losses.png."""
import json
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "multilabel_digits"))
from softmax_multilabel_layer.evaluation import metrics  # noqa: E402

import digits_eval  # noqa: E402
import digits_train  # noqa: E402
import run_demo  # noqa: E402

MAX_ITER, EVERY = 450, 150


def test_fast_demo_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "demo")
    results = run_demo.main(["--out", out, "--n-train", "3200", "--n-test", "500", "--max-iter", str(MAX_ITER),
                             "--snapshot-every", str(EVERY), "--seeds", "1", "--progress-every", "150"])
    printed = capsys.readouterr().out

    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert saved["summary"] == json.loads(json.dumps(results["summary"]))
    runs = saved["runs"]
    with h5py.File(os.path.join(out, "data", "test.h5"), "r") as f:
        x, y = f["data"][()], f["label"][()]
    rng = np.random.default_rng(0)
    chance = np.mean([metrics.average_precision(y, rng.random(y.shape)) for _ in range(5)])
    assert sorted(r["variant"] for r in runs) == sorted(digits_train.VARIANTS)
    for run in runs:
        # trained through the wrapper CLI; the full log is kept next to the snapshots
        with open(run["log"]) as f:
            log = f.read()
        assert log.startswith("# %s train --solver " % digits_train.caffe_bin())
        assert digits_train.caffe_bin().endswith(os.path.join(".venv", "bin", "caffe"))
        assert "Solving MultilabelDigits" in log and "Optimization Done." in log
        assert [s["iter"] for s in run["snapshots"]] == [EVERY, 2 * EVERY, 3 * EVERY]
        assert os.path.exists(os.path.join(run["run_dir"], "snap_iter_%d.solverstate" % MAX_ITER))
        its = [it for it, _ in run["train_loss"]]
        assert its[0] == 0 and its[-1] == MAX_ITER
        loss = [v for _, v in run["train_loss"]]
        assert np.mean(loss[-5:]) < 0.9 * loss[0], run["variant"]
        assert [it for it, _ in run["test_loss"]] == [EVERY, 2 * EVERY, 3 * EVERY]
        for s in run["snapshots"]:
            for key in ("mAP", "precision_at_m", "exact_set_accuracy"):
                assert 0.0 <= s[key] <= 1.0
        # clearly better than chance (random scores; AP near the ~20% positive rate)
        assert run["final"]["mAP"] > chance + 0.1, (run["variant"], run["final"]["mAP"], chance)

    # the reported final mAP agrees with an independent pycaffe + sklearn computation
    from sklearn.metrics import average_precision_score
    run = runs[0]
    scores = digits_eval.predict(digits_train.prototxt_path(run["variant"], "deploy"),
                                 run["final"]["caffemodel"], x)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4) == (run["variant"] == "softmax_multilabel")
    assert abs(average_precision_score(y, scores, average="macro") - run["final"]["mAP"]) < 1e-6

    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    for name in digits_train.LOSS_NAMES.values():
        assert name in md
    with open(os.path.join(out, "losses.png"), "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000

    # progress is the filtered log, not glog
    assert "iter   150  train loss" in printed and "test loss" in printed
    # every progress line ends with the share done, the time elapsed and the time left
    lines = [line for line in printed.splitlines() if "train loss" in line]
    assert lines and all(re.search(r"\[\s*\d+% \d+:\d\d elapsed, (~\d+:\d\d left|estimating)\]$", line)
                         for line in lines), lines
    assert re.search(r"\[100% \d+:\d\d elapsed, ~0:00 left\]", printed)
    assert "solver.cpp" not in printed and "Creating layer" not in printed
    assert "losses.png" in printed and "| Loss |" in printed


def test_progress_estimates_the_time_left(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(run_demo.time, "time", lambda: clock[0])
    progress = run_demo.Progress(["a s1", "b s1"], max_iter=1500)     # 2 x 1575 units with scoring
    assert progress.status() == "  0% 0:00 elapsed, estimating"
    clock[0] += 63
    progress.update("a s1", "iter   300  train loss 1.2")
    progress.update("b s1", "iter   450  test loss  1.1")
    progress.update("b s1", "iter   300  train loss 1.3")     # an older line does not move it back
    progress.update("a s1", "Optimization Done.")
    assert progress.status() == " 24% 1:03 elapsed, ~3:22 left"   # 750 of 3150 in 63 s
    progress.update("a s1", "iter  1500  train loss 0.2")
    assert progress.status().startswith(" 62%")                   # trained, not yet scored
    progress.finish("a s1")
    clock[0] += 63
    assert progress.status() == " 64% 2:06 elapsed, ~1:10 left"   # 2025 of 3150 in 126 s
    progress.finish("b s1")
    assert progress.status() == "100% 2:06 elapsed, ~0:00 left"
