"""Net I/O checks before any net is built: missing files are one-line errors with exit status 2 (Caffe would
abort the process with a glog stack trace), and --iters that wrap past the end of a list-backed source."""
import os
import subprocess
import sys

import pytest
from test_evaluate import BATCH, N, make_case

from softmax_multilabel_layer.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join("prototxt", "digits", "softmax_multilabel_train_val.prototxt")


def _one_line(capsys, command, message):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("softmax-multilabel %s: error: " % command), err
    assert message in err, err


def test_the_issue_example_reports_the_missing_weights_without_an_abort(tmp_path):
    """`evaluate --net digits --weights nonexistent.caffemodel --iters 2` where the digits data was not made: a
    child process, so an abort would show as a signal, not kill the tests."""
    command = [os.path.join(REPO, ".venv", "bin", "softmax-multilabel"), "evaluate", "--net",
               os.path.join(REPO, DIGITS), "--weights", "nonexistent.caffemodel", "--iters", "2"]
    done = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "softmax-multilabel evaluate: error: weights file nonexistent.caffemodel does not exist\n"


def test_missing_data_files_are_named_before_the_net_is_built(tmp_path, monkeypatch, capsys):
    net, weights, _, _, _ = make_case(tmp_path, "softmax")
    monkeypatch.chdir(tmp_path)
    digits = os.path.join(REPO, DIGITS)
    assert main(["evaluate", "--net", digits, "--weights", weights, "--iters", "2"]) == 2
    _one_line(capsys, "evaluate", "TEST data layer 'data' (HDF5Data): source output/digits/data/test_list.txt does "
                                  "not exist")
    os.remove(tmp_path / "test.h5")                         # listed by the HDF5 source list
    assert main(["evaluate", "--net", net, "--weights", weights, "--iters", "1"]) == 2
    _one_line(capsys, "evaluate", "list.txt:1: file %s does not exist" % (tmp_path / "test.h5"))
    assert main(["gradcheck", digits, "--layer", "loss"]) == 2          # gradcheck builds a net too
    capsys.readouterr()
    image_data = tmp_path / "image_data.prototxt"
    (tmp_path / "l.txt").write_text("a.jpg 0\n")
    image_data.write_text('layer { name: "d" type: "ImageData" top: "data" top: "label" '
                          'transform_param { mean_file: "mean.binaryproto" } '
                          'image_data_param { source: "l.txt" batch_size: 1 } }')
    from softmax_multilabel_layer.evaluation.netio import check_files, read_net
    from softmax_multilabel_layer.params import MultilabelLossError
    with pytest.raises(MultilabelLossError, match=r"mean_file mean\.binaryproto does not exist"):
        check_files(read_net(str(image_data)))
    (tmp_path / "mean.binaryproto").write_bytes(b"")
    with pytest.raises(MultilabelLossError, match=r"l\.txt:1: file a\.jpg does not exist"):
        check_files(read_net(str(image_data)))


def test_iters_that_wrap_past_the_end_are_an_error(tmp_path, capsys):
    net, weights, _, _, _ = make_case(tmp_path, "softmax")
    fits = N // BATCH
    assert main(["evaluate", "--net", net, "--weights", weights, "--iters", str(fits)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--net", net, "--weights", weights, "--iters", str(fits + 1)]) == 2
    _one_line(capsys, "evaluate", "--iters %d x batch_size %d = %d samples, but TEST data layer 'd' of %s reads %d "
                                  "from %s" % (fits + 1, BATCH, (fits + 1) * BATCH, net, N, tmp_path / "list.txt"))
    assert main(["evaluate", "--net", net, "--weights", weights, "--iters", str(fits + 1)]) == 2
    assert "at most %d batches fit (%d samples)" % (fits, fits * BATCH) in capsys.readouterr().err


def test_predict_old_form_checks_weights_first(tmp_path, capsys):
    deploy = os.path.join(REPO, "prototxt", "digits", "softmax_multilabel_deploy.prototxt")
    assert main(["predict", "--model", deploy, "--weights", str(tmp_path / "none.caffemodel"), "x.png"]) == 2
    _one_line(capsys, "predict", "does not exist")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
