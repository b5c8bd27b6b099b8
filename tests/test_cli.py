"""The softmax-multilabel command: help, version, one-line errors with status 2, gradcheck and prototxt."""
import json
import os
import subprocess
import sys
from pathlib import Path

import caffe
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

import softmax_multilabel_layer
from softmax_multilabel_layer.cli import main

from caffe_nets import input_layer
from conftest import warns_if

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "softmax-multilabel"


def run_main(capsys, *argv):
    status: int | str | None
    try:
        status = main(list(argv))
    except SystemExit as exc:          # argparse's --help, --version and usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def loss_net(tmp_path, module, layer):
    path = tmp_path / "net.prototxt"
    path.write_text(input_layer("scores", (3, 5)) + input_layer("labels", (3, 5)) +
                    'layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" loss_weight: 1'
                    ' python_param { module: "%s" layer: "%s" } }\n' % (module, layer))
    return str(path)


def test_help_shows_examples(capsys):
    status, out, _ = run_main(capsys, "--help")
    assert status == 0
    assert "examples:" in out and "softmax-multilabel gradcheck train.prototxt --layer loss" in out
    status, out, _ = run_main(capsys, "gradcheck", "--help")
    assert status == 0 and "fill specs:" in out and "exit status: 0 passed, 1 failed (or tested nothing" in out
    status, out, _ = run_main(capsys, "prototxt", "--help")
    assert status == 0 and "--loss sigmoid --gamma 2" in out


def test_version_names_project_and_caffe(capsys):
    status, out, _ = run_main(capsys, "--version")
    assert status == 0
    assert out.splitlines() == ["softmax-multilabel %s" % softmax_multilabel_layer.__version__,
                                "Caffe %s (with Python layers) at %s" % (caffe.__version__,
                                                                         os.path.dirname(caffe.__file__))]


@pytest.mark.parametrize("argv,fragment", [
    ([], "required: {gradcheck,prototxt"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["gradcheck"], "required: net, --layer"),
    (["gradcheck", "net.prototxt", "--layer", "loss", "--seed", "abc"], "--seed: invalid int value: 'abc'"),
    (["gradcheck", "net.prototxt", "--layer", "loss", "--fill", "labels"], "expected BLOB=SPEC, got 'labels'"),
    (["gradcheck", "missing.prototxt", "--layer", "loss"], "no such net file: missing.prototxt"),
    (["prototxt"], "required: --loss"),
    (["prototxt", "--loss", "softmaxx"], "invalid choice: 'softmaxx'"),
    (["prototxt", "--loss", "softmax", "--gamma", "2"], "unknown option(s) gamma; known options: normalize_targets"),
    (["prototxt", "--loss", "sigmoid", "--alpha", "2"], "alpha (-1 = off) must be in [0.0, 1.0], got 2"),
    (["prototxt", "--loss", "sigmoid", "--pos-weight", "[1,2"],
     "argument --pos-weight/--pos_weight: '[1,2' is not valid JSON (Expecting ',' delimiter"),
    (["prototxt", "--loss", "softmax", "--label-smoothing", "0.1.2"], "'0.1.2' is not valid JSON"),
    (["prototxt", "--loss", "softmax", "--normalization", "mean"],
     "prototxt: error: normalization must be one of"),
    (["prototxt", "--loss", "two_way", "--tp", "0"], "tp must be > 0 (a temperature), got 0.0"),
    (["prototxt", "--loss", "two_way", "--label-format", "indices"],
     "unknown option(s) label_format; known options: tp, tn, axis"),
    (["prototxt", "--loss", "zlpr", "--gamma", "2"], "unknown option(s) gamma; known options: normalization"),
])
def test_wrong_arguments_give_one_line_and_status_2(capsys, argv, fragment):
    status, out, err = run_main(capsys, *argv)
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("softmax-multilabel") and fragment in err, err
    assert "layer_prototxt" not in err and "python_param:" not in err     # internal function names


def test_gradcheck_status_0_on_our_layer_and_1_on_the_blog_layer(tmp_path, capsys):
    ours = loss_net(tmp_path, "softmax_multilabel_layer.layers", "SoftmaxMultilabelLossLayer")
    with warns_if(True):                                    # real labels above 1 with "count": the layer says so
        status, out, _ = run_main(capsys, "gradcheck", ours, "--layer", "loss", "--fill", "labels=uniform:0.2:3")
    assert status == 0, out
    assert "bottom 0      scores  15/15" in out and out.rstrip().endswith("gradient check PASSED")
    blog = loss_net(tmp_path, "blog_softmax_loss_layer", "BlogSoftmaxLossLayer")
    status, out, _ = run_main(capsys, "gradcheck", blog, "--layer", "loss", "--fill", "labels=uniform:0.2:3")
    assert status == 1, out
    assert out.rstrip().endswith("gradient check FAILED")


def test_gradcheck_layer_error_is_one_line(tmp_path, capsys):
    blog = loss_net(tmp_path, "blog_softmax_loss_layer", "BlogSoftmaxLossLayer")
    status, _, err = run_main(capsys, "gradcheck", blog, "--layer", "loss", "--fill", "labels=constant:0")
    assert status == 2 and len(err.splitlines()) == 1
    assert "layer 'loss' forward failed: ZeroDivisionError" in err


def test_prototxt_block_builds_and_runs(tmp_path, capsys):
    status, out, _ = run_main(capsys, "prototxt", "--loss", "sigmoid", "--gamma", "2", "--pos-weight", "[1, 2, 3]",
                              "--bottom", "fc8", "--bottom", "label", "--name", "focal")
    assert status == 0
    layer = text_format.Merge(out, caffe_pb2.NetParameter()).layer[0]
    assert (layer.name, layer.type, list(layer.bottom), list(layer.loss_weight)) == \
        ("focal", "Python", ["fc8", "label"], [1.0])
    assert layer.python_param.layer == "SigmoidMultilabelLossLayer"
    assert json.loads(layer.python_param.param_str) == {"pos_weight": [1, 2, 3], "gamma": 2}
    path = tmp_path / "net.prototxt"
    path.write_text(input_layer("fc8", (2, 3)) + input_layer("label", (2, 3)) + out)
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["label"].data[...] = [[1, 0, 0], [0, 1, 1]]
    assert float(net.forward()["loss"]) > 0
    status, out, _ = run_main(capsys, "prototxt", "--loss", "softmax", "--normalization", "valid")
    assert status == 0 and '"normalization": "valid"' in out           # a bare word is still a string


@pytest.mark.parametrize("loss,options,layer_type,param_str,labels", [
    ("zlpr", [], "ZLPRLossLayer", None, [[1, 0, 0], [0, 1, 1]]),
    ("zlpr", ["--label-format", "indices"], "ZLPRLossLayer", {"label_format": "indices"}, [[0, -1], [1, 2]]),
    ("two_way", ["--tp", "2", "--tn", "0.5"], "TwoWayLossLayer", {"tp": 2, "tn": 0.5}, [[1, 0, 0], [0, 1, 1]]),
])
def test_prototxt_offers_zlpr_and_two_way(tmp_path, capsys, loss, options, layer_type, param_str, labels):
    status, out, err = run_main(capsys, "prototxt", "--loss", loss, *options)
    assert status == 0, err
    layer = text_format.Merge(out, caffe_pb2.NetParameter()).layer[0]
    assert (layer.python_param.layer, list(layer.bottom)) == (layer_type, ["scores", "labels"])  # no label_weights
    assert (json.loads(layer.python_param.param_str) if layer.python_param.param_str else None) == param_str
    path = tmp_path / "net.prototxt"
    path.write_text(input_layer("scores", (2, 3)) + input_layer("labels", (2, len(labels[0]))) + out)
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["scores"].data[...] = [[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]
    net.blobs["labels"].data[...] = labels
    assert float(net.forward()["loss"]) > 0


def test_console_script_and_python_m_run(tmp_path):
    assert CONSOLE_SCRIPT.exists(), "make setup installs the softmax-multilabel console script into the venv"
    net = loss_net(tmp_path, "softmax_multilabel_layer.layers", "SigmoidMultilabelLossLayer")
    command = [str(CONSOLE_SCRIPT), "gradcheck", net, "--layer", "loss", "--fill", "labels=bernoulli:0.5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gradient check PASSED" in result.stdout
    result = subprocess.run([sys.executable, "-m", "softmax_multilabel_layer", "prototxt", "--loss", "softmax"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'layer: "SoftmaxMultilabelLossLayer"' in result.stdout


def test_version_still_works_without_pycaffe(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "caffe", None)        # makes `import caffe` raise ImportError
    status, out, _ = run_main(capsys, "--version")
    assert status == 0
    assert out.splitlines()[1].startswith("Caffe: not importable (ModuleNotFoundError: ")
    assert out.rstrip().endswith("run `make setup`")
