"""`softmax-multilabel evaluate`'s outputs at their edges: valid JSON (null for an undefined metric, and why),
PR curves whose area is the AP they are shown with, one-line errors before any work, no warnings leaking."""
import json

import numpy as np
import pytest

from softmax_multilabel_layer.cli import main
from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.evaluation.evaluate import figure, json_ready

PREFIX = "softmax-multilabel evaluate: error: "


def _strict_json(text):
    def refuse(name):
        raise ValueError("not JSON: %s" % name)
    return json.loads(text, parse_constant=refuse)


def _arrays(tmp_path, y, s):
    np.save(tmp_path / "s.npy", s)
    np.save(tmp_path / "y.npy", y)
    return ["evaluate", "--scores", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "y.npy")]


def test_json_writes_null_for_an_undefined_metric_and_says_why(tmp_path, capsys):
    rng = np.random.default_rng(4)
    args = _arrays(tmp_path, np.zeros((30, 4), bool), rng.random((30, 4)))
    assert main(args + ["--json", str(tmp_path / "m.json"), "--plot", str(tmp_path / "p.png")]) == 0
    captured = capsys.readouterr()
    got = _strict_json((tmp_path / "m.json").read_text())
    assert got["mAP"] is None and got["AP_micro"] is None and got["recall_at_1"] is None
    assert got["undefined"]["mAP"] == "null: undefined, no class has a true label"
    assert got["undefined"]["AP_samples"] == "null: undefined, no sample has a true label"
    assert got["one_error"] == 1.0 and "ranking_loss" not in got["undefined"]
    assert "Warning" not in captured.err and captured.err == ""          # no numpy / matplotlib warnings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "p.png", "s.npy", "y.npy"]   # no temporary left


def test_json_ready_keeps_numbers_and_nests():
    out = json_ready({"samples": 0, "mAP": float("nan"), "f1_micro": 0.5, "snapshots": [{"mAP": float("nan")}]})
    assert out == {"samples": 0, "mAP": None, "f1_micro": 0.5, "snapshots": [{"mAP": None}],
                   "undefined": {"mAP": "null: undefined, no class has a true label"}}
    undefined = json_ready({"samples": 0, "coverage": float("nan")})["undefined"]
    assert undefined == {"coverage": "null: undefined, no samples"}


def _area(line):
    x, y = line.get_xydata().T
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))          # trapezoids: exact on a staircase


def test_drawn_pr_area_equals_the_ap_in_the_title():
    # 8 samples, positives ranked 1, 3 and 6: AP (1 + 2/3 + 3/6) / 3 = 0.722; where="post" drew 0.633 instead
    y = np.array([[1], [0], [1], [0], [0], [1], [0], [0]])
    s = np.array([[.9], [.8], [.7], [.6], [.5], [.4], [.3], [.2]])
    fig = figure(y, s)
    ap = M.average_precision(y, s, "micro")
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 6) / 3, abs=1e-15)
    assert _area(fig.axes[0].lines[0]) == pytest.approx(ap, abs=1e-12)
    assert fig.axes[0].get_title() == "micro-averaged PR (AP %.4f)" % ap
    rng = np.random.default_rng(6)
    y = rng.random((80, 7)) < 0.3
    s = np.round(rng.random((80, 7)) + 0.4 * y, 1).astype(np.float32)      # ties
    fig = figure(y, s)
    assert _area(fig.axes[0].lines[0]) == pytest.approx(M.average_precision(y, s, "micro"), abs=1e-12)
    ap = M.average_precision(y, s, None)
    lines = fig.axes[1].lines
    assert len(lines) == 5
    for line in lines:
        c = int(line.get_label().split()[0])
        assert line.get_label() == "%d (AP %.3f)" % (c, ap[c])
        assert _area(line) == pytest.approx(ap[c], abs=1e-12)


@pytest.mark.parametrize("option", ["--json", "--plot", "--per-class", "--thresholds-out"])
def test_a_bad_output_path_fails_before_any_work(tmp_path, capsys, option):
    # --net names no file: had the net been read first, that would be the error
    missing = str(tmp_path / "no" / "out")
    args = ["evaluate", "--net", str(tmp_path / "absent.prototxt"), "--weights", "w", "--iters", "1", option, missing]
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines()[-1] == PREFIX + "%s %s: folder %s does not exist" % (
        option, missing, tmp_path / "no")
    assert main(["evaluate", "--scores", "s", "--labels", "y", option, str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == PREFIX + "%s %s: is a folder; expected a file name" % (
        option, tmp_path)


def test_messages(tmp_path, capsys):
    rng = np.random.default_rng(7)
    y = rng.random((20, 3)) < 0.5
    s = rng.random((20, 3))
    args = _arrays(tmp_path, y, s)
    np.savetxt(tmp_path / "s.csv", s, delimiter=",")
    np.savez(tmp_path / "s.npz", scores=s)
    (tmp_path / "names.txt").write_text("a\nb\n")
    cases = [
        (["--scores", str(tmp_path / "s.csv"), "--labels", str(tmp_path / "y.npy")],
         "--scores %s: not a .npy file (numpy's np.save format)" % (tmp_path / "s.csv")),
        (["--scores", str(tmp_path / "s.npz"), "--labels", str(tmp_path / "y.npy")],
         "--scores %s: an .npz archive (arrays: scores); expected one .npy array" % (tmp_path / "s.npz")),
        (args[1:] + ["--class-names", str(tmp_path / "names.txt")], "has 2 names but the scores have C=3 classes"),
        (args[1:] + ["--rule", "threshold:5"], "--rule threshold:5 predicts no label at all"),
        (args[1:] + ["--rule", "threshold:-5"], "--rule threshold:-5 predicts every label"),
        (args[1:] + ["--rule", "top-k:4"], "--rule top-k:4: k=4 is more than the C=3 classes"),
        (["--scores", str(tmp_path / "absent.npy"), "--labels", str(tmp_path / "y.npy")], "No such file"),
    ]
    for extra, message in cases:
        assert main(["evaluate"] + extra) == 2, extra
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(PREFIX) and message in err[0], (extra, err)


def test_weighted_labels_are_evaluated_as_positives(tmp_path, capsys):
    rng = np.random.default_rng(8)
    y = rng.random((40, 5)) < 0.4
    s = rng.random((40, 5))
    weights = np.where(y, 0.5, 0.0).astype(np.float32)              # the data layers' "2:0.5"
    assert main(_arrays(tmp_path, weights, s) + ["--json", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    assert _strict_json((tmp_path / "m.json").read_text())["mAP"] == M.average_precision(y, s)
