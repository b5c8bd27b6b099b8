"""`softmax-multilabel evaluate`: a TEST phase run of the user's own net (HDF5 data, dense or index labels),
every snapshot of a folder, saved arrays; outputs; one-line errors with exit status 2."""
import csv
import json
import os
import subprocess
import sys

import caffe
import h5py
import numpy as np
import pytest

from softmax_multilabel_layer.cli import main
from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.evaluation.report import report

N, D, C, BATCH = 60, 8, 5, 20

LOSSES = {
    "softmax": ('type: "Python" python_param { module: "softmax_multilabel_layer.layers" '
                'layer: "SoftmaxMultilabelLossLayer" param_str: \'{"normalize_targets": "count"}\' }', "dense"),
    "softmax_indices": ('type: "Python" python_param { module: "softmax_multilabel_layer.layers" '
                        'layer: "SoftmaxMultilabelLossLayer" param_str: \'{"label_format": "indices"}\' }', "indices"),
    "sigmoid_native": ('type: "SigmoidCrossEntropyLoss"', "dense"),
    "softmax_with_loss": ('type: "SoftmaxWithLoss"', "single"),
}


def make_case(tmp_path, loss, num_output=C):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = rng.random((N, C)) < 0.3
    y[np.arange(N), rng.integers(0, C, N)] = True
    body, fmt = LOSSES[loss]
    if fmt == "single":
        y = np.zeros((N, C), bool)
        y[np.arange(N), rng.integers(0, C, N)] = True
    stored = {"dense": y.astype(np.float32),
              "single": y.argmax(1).astype(np.float32),
              "indices": np.array([np.r_[np.flatnonzero(r), -np.ones(C - r.sum())] for r in y], np.float32)}[fmt]
    h5 = tmp_path / "test.h5"
    with h5py.File(h5, "w") as f:
        f["data"], f["label"] = x, stored
    (tmp_path / "list.txt").write_text(str(h5) + "\n")
    net = tmp_path / ("%s.prototxt" % loss)
    net.write_text("""name: "tiny"
layer { name: "d" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "%s" batch_size: %d } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" bottom: "fc" bottom: "label" top: "loss" loss_weight: 1 %s }
""" % (tmp_path / "list.txt", BATCH, num_output, body))
    caffe.set_mode_cpu()
    caffe.set_random_seed(9)
    n = caffe.Net(str(net), caffe.TEST)
    weights = tmp_path / ("%s.caffemodel" % loss)
    n.save(str(weights))
    w, b = n.params["fc"][0].data.astype(np.float64), n.params["fc"][1].data.astype(np.float64)
    return str(net), str(weights), x, y, x.astype(np.float64) @ w.T + b


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_net_run_equals_metrics_of_the_same_outputs(tmp_path, loss, capsys):
    net, weights, x, y, fc = make_case(tmp_path, loss)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--net", net, "--weights", weights, "--iters", str(N // BATCH), "--json", str(out),
                 "--rule", "top-k:2"]) == 0
    captured = capsys.readouterr()
    assert "mAP" in captured.out and "3/3" in captured.err         # table, progress bar
    got = json.loads(out.read_text())
    p = (np.exp(fc) / np.exp(fc).sum(1, keepdims=True)) if "softmax" in loss else 1 / (1 + np.exp(-fc))
    assert got["activation"] == ("Softmax" if "softmax" in loss else "Sigmoid")
    expected = report(y, p, "top-k:2")
    for key in ("mAP", "AP_micro", "ranking_loss", "coverage", "f1_macro", "exact_match"):
        assert abs(got[key] - expected[key]) < 1e-6, key       # float32 net vs float64 numpy
    assert got["samples"] == N and got["classes"] == C


def test_arrays_and_outputs(tmp_path, capsys):
    rng = np.random.default_rng(5)
    y = rng.random((300, 6)) < 0.3
    y[:, 5] = False
    s = rng.random((300, 6)) + 0.5 * y
    np.save(tmp_path / "s.npy", s)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "names.txt").write_text("\n".join("class%d" % i for i in range(6)) + "\n")
    args = ["evaluate", "--scores", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "y.npy"),
            "--class-names", str(tmp_path / "names.txt"), "--json", str(tmp_path / "m.json"),
            "--per-class", str(tmp_path / "c.csv"), "--plot", str(tmp_path / "p.png"),
            "--thresholds-out", str(tmp_path / "t.json"), "--rule", "threshold:0.7"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "no true label (left out of AP)" in table and "1 classes: 5" in table
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["mAP"] == M.average_precision(y, s) and got["f1_micro"] == M.f1(y, s >= 0.7, "micro")
    with open(tmp_path / "c.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["class%d" % i for i in range(6)]
    ap = M.average_precision(y, s, None)
    assert all(abs(float(r["AP"]) - ap[i]) < 1e-6 for i, r in enumerate(rows[:5])) and rows[5]["AP"] == ""
    assert int(rows[0]["support"]) == y[:, 0].sum()
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the thresholds file is what `predict --rule thresholds:FILE` reads
    assert main(["evaluate", "--scores", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--rule", "thresholds:%s" % (tmp_path / "t.json"), "--json", str(tmp_path / "m2.json")]) == 0
    f1_per_class = json.loads((tmp_path / "t.json").read_text())["f1"]
    assert abs(json.loads((tmp_path / "m2.json").read_text())["f1_macro"] - np.mean(f1_per_class)) < 1e-12


def test_snapshots(tmp_path, capsys):
    net, weights, x, y, fc = make_case(tmp_path, "softmax")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    n = caffe.Net(net, weights, caffe.TEST)
    expected = {}
    for it, factor in ((20, 1.0), (100, -1.0), (40, 0.5)):
        n.params["fc"][0].data[...] *= factor
        n.save(str(snaps / ("snap_iter_%d.caffemodel" % it)))
        z = x.astype(np.float64) @ n.params["fc"][0].data.T.astype(np.float64) + n.params["fc"][1].data
        expected[it] = M.average_precision(y, np.exp(z) / np.exp(z).sum(1, keepdims=True))
    assert main(["evaluate", "--net", net, "--snapshots", str(snaps), "--iters", "3", "--json",
                 str(tmp_path / "m.json"), "--plot", str(tmp_path / "p.png")]) == 0
    captured = capsys.readouterr()
    got = json.loads((tmp_path / "m.json").read_text())
    assert [r["iteration"] for r in got["snapshots"]] == [20, 40, 100]
    for r in got["snapshots"]:
        assert abs(r["mAP"] - expected[r["iteration"]]) < 1e-6
    assert len(set(expected.values())) == 3 and got["mAP"] == got["snapshots"][-1]["mAP"]
    assert "snapshot 3/3 snap_iter_100.caffemodel" in captured.err
    assert (tmp_path / "p.png").stat().st_size > 10000


def test_bad_input(tmp_path, capsys):
    net, weights, x, y, fc = make_case(tmp_path, "softmax")
    (tmp_path / "other").mkdir()
    other_net, other_weights, *_ = make_case(tmp_path / "other", "softmax_with_loss", num_output=C + 1)
    np.save(tmp_path / "nan.npy", np.where(y, np.nan, 0.5))
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "short.npy", np.zeros((N, C - 1)))
    cases = [
        (["--scores", str(tmp_path / "nan.npy"), "--labels", str(tmp_path / "y.npy")], "non-finite value"),
        (["--scores", str(tmp_path / "short.npy"), "--labels", str(tmp_path / "y.npy")],
         "shape (60, 4) does not match labels shape (60, 5)"),
        (["--net", net, "--weights", weights, "--iters", "1", "--scores-blob", "fc8"],
         "--scores-blob fc8: no such blob in the TEST net; blobs: data, label, fc, loss"),
        (["--net", net, "--weights", other_weights, "--iters", "1"],
         "layer 'fc' param 0 has shape (6, 8) in the file, (5, 8) in the net"),
        (["--net", net, "--weights", str(tmp_path / "y.npy"), "--iters", "1"], "is not a .caffemodel"),
        (["--net", net, "--weights", weights], "--iters must be >= 1"),
        (["--scores", str(tmp_path / "y.npy")], "give --scores and --labels together"),
    ]
    for args, message in cases:
        assert main(["evaluate"] + args) == 2, args
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith("softmax-multilabel evaluate: error: ") and message in err[-1], (args, err)


def test_an_error_is_one_line_on_stderr_in_a_fresh_process(tmp_path):
    """A fresh `softmax-multilabel` process (glog not yet loaded) prints the error alone: no Caffe INFO lines."""
    net, weights, *_ = make_case(tmp_path, "softmax")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOG_")}
    done = subprocess.run([sys.executable, "-m", "softmax_multilabel_layer", "evaluate", "--net", net, "--weights",
                           weights, "--iters", "1", "--scores-blob", "fc8"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["softmax-multilabel evaluate: error: --scores-blob fc8: no such blob in the "
                                        "TEST net; blobs: data, label, fc, loss"], done.stderr
