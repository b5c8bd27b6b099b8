"""The model folder (`deploy --out`) and the Model API: on every example with images, the folder's
probabilities equal the TEST net's on the same images (crop without resize, resize with crop, greyscale,
mean values and a mean file, an LMDB Data layer), with Caffe and with OpenCV's DNN; the OpenCV path imports
no Caffe."""
import json
import os
import subprocess
import sys

import caffe
import cv2
import numpy as np
import pytest
from image_files import pattern_image

from softmax_multilabel_layer import Model
from softmax_multilabel_layer.cli import main
from softmax_multilabel_layer.evaluation.deploy import write_model_folder
from softmax_multilabel_layer.evaluation.model import read_spec
from softmax_multilabel_layer.params import MultilabelLossError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "examples", "multilabel_images"))
sys.path.insert(0, os.path.join(REPO, "examples", "image_lmdb_hdf5"))
import make_dataset  # noqa: E402
import make_images  # noqa: E402
import run_example  # noqa: E402

SEED = 11
TOL = 1e-5


def softmax(s):
    s = np.asarray(s, np.float64).reshape(len(s), -1)
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def reference_probabilities(train_val, weights_out, count, scores="scores", cwd=None):
    """The TEST net's own probabilities for its first ``count`` samples (its data layer reads the list in order);
    saves the net's (seeded random) weights to ``weights_out``."""
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        caffe.set_mode_cpu()
        caffe.set_random_seed(SEED)
        net = caffe.Net(str(train_val), caffe.TEST)
        for i, params in enumerate(net.params.values()):     # trained-like weights: biases not all zero
            rng = np.random.default_rng([SEED, i])
            params[-1].data[...] = rng.normal(scale=0.3, size=params[-1].data.shape)
        net.save(str(weights_out))
        net.forward()
        p = softmax(net.blobs[scores].data)[:count]
        if hasattr(net.layers[0], "close"):
            net.layers[0].close()
    finally:
        os.chdir(old)
    return p





def list_paths(list_file, root):
    with open(list_file) as f:
        return [os.path.join(root, line.split()[0]) for line in f if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def images_example(tmp_path_factory):
    """examples/multilabel_images (greyscale, a 28x28 crop of 32x32 images, no resize), its own prototxt."""
    out = tmp_path_factory.mktemp("multilabel_images")
    make_images.make_images(str(out), n_train=20, n_test=100)
    paths = run_example.write_prototxts(str(out))
    ref = reference_probabilities(paths["train_val"], out / "w.caffemodel", 100)
    return out, paths["train_val"], str(out / "w.caffemodel"), list_paths(out / "test.txt", str(out)), ref


OUR_LAYER = """layer { name: "data" type: "Python" top: "data" top: "label" include { phase: TEST }
  python_param { module: "softmax_multilabel_layer.data" layer: "MultilabelImageDataLayer"
    param_str: '%(params)s' } }
"""
OUR_PARAMS = ('{"source": "%(list)s", "num_classes": 4, "batch_size": %(n)d, "new_height": 30, "new_width": 34, '
              '"crop_size": 28, "mean_value": [104, 117, 123], "scale": 0.017, "threads": 1}')
IMAGE_DATA = """layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { %(transform)s }
  image_data_param { source: "%(list)s" root_folder: "%(root)s/" batch_size: %(n)d %(resize)s } }
"""
# This Caffe's ImageData (the cv::Mat transform of the SSD fork) takes a mean file only of the cropped size and
# indexes it as if uncropped: a mean file is tested without a crop (the Data layer's Datum path crops it right).
IMAGE_DATA_CASES = {
    "image_data_mean_file": ('mean_file: "%(mean)s" scale: 0.02', "new_height: 28 new_width: 28"),
    "image_data_crop": ("crop_size: 28 mean_value: 100 mean_value: 110 mean_value: 120",
                        "new_height: 31 new_width: 33"),
}
BODY = """layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 6 kernel_size: 5 stride: 2 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "scores"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.05 } } }
"""
SOFTMAX_WITH_LOSS = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "scores" bottom: "label" }'
LOSS = """layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss" loss_weight: 1
  python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer" } }
"""


@pytest.fixture(scope="module")
def colour_cases(tmp_path_factory):
    """Colour images of several sizes, resized then centre-cropped: our data layer with mean values, Caffe's
    ImageData with a mean file (.binaryproto)."""
    out = tmp_path_factory.mktemp("colour")
    n = 12
    paths = []
    for i in range(n):
        size = [(40, 48), (31, 29), (64, 50)][i % 3]
        path = str(out / ("im %02d.jpg" % i))                 # a space in the name
        cv2.imwrite(path, pattern_image(i, size))
        paths.append(path)
    (out / "list.txt").write_text("".join("%s\t%d\n" % (p, i % 4) for i, p in enumerate(paths)))
    (out / "list_id.txt").write_text("".join("%s %d\n" % (os.path.basename(p).replace(" ", "_"), i % 4)
                                             for i, p in enumerate(paths)))
    for p in paths:                                          # ImageData splits at the last space: no space in names
        os.link(p, str(out / os.path.basename(p).replace(" ", "_")))
    mean = caffe.io.array_to_blobproto(np.random.default_rng(3).uniform(60, 160, (1, 3, 28, 28)))
    (out / "mean.binaryproto").write_bytes(mean.SerializeToString())
    cases = {}
    ours = out / "ours.prototxt"
    ours.write_text(OUR_LAYER % {"params": OUR_PARAMS % {"list": out / "list.txt", "n": n}} + BODY + LOSS)
    cases["ours"] = (str(ours), paths)
    for name, (transform, resize) in IMAGE_DATA_CASES.items():
        image_data = out / (name + ".prototxt")
        image_data.write_text(IMAGE_DATA % {"list": out / "list_id.txt", "root": out, "n": n, "resize": resize,
                                            "transform": transform % {"mean": out / "mean.binaryproto"}}
                              + BODY + SOFTMAX_WITH_LOSS)
        cases[name] = (str(image_data), [str(out / os.path.basename(p).replace(" ", "_")) for p in paths])
    refs = {}
    for name, (net, imgs) in cases.items():
        refs[name] = (net, str(out / (name + ".caffemodel")), imgs,
                      reference_probabilities(net, out / (name + ".caffemodel"), n))
    return out, refs


@pytest.fixture(scope="module")
def lmdb_example(tmp_path_factory):
    """examples/image_lmdb_hdf5: colour PNGs in an LMDB written by convert_imageset (Data layer, scale)."""
    out = tmp_path_factory.mktemp("image_lmdb_hdf5")
    assert make_dataset.main([str(out), "--count", "40"]) == 0
    net = os.path.join(REPO, "prototxt", "image_lmdb_hdf5", "train.prototxt")
    ref = reference_probabilities(net, out / "w.caffemodel", 32, cwd=str(out))
    # and a variant that crops 12x12 out of the 16x16 images and subtracts a 16x16 mean file (Datum path: the
    # mean is cropped at the image's offsets); the image size comes from the LMDB's first record
    mean = caffe.io.array_to_blobproto(np.random.default_rng(5).uniform(20, 200, (1, 3, 16, 16)))
    (out / "mean.binaryproto").write_bytes(mean.SerializeToString())
    with open(net) as f:
        text = f.read()
    cropped = out / "train_crop.prototxt"
    cropped.write_text(text.replace("transform_param { scale: 0.00390625 }", 'transform_param { scale: 0.00390625 '
                                    'crop_size: 12 mean_file: "mean.binaryproto" }'))
    ref_crop = reference_probabilities(cropped, out / "w_crop.caffemodel", 32, cwd=str(out))
    return out, {"image_lmdb_hdf5": (net, str(out / "w.caffemodel"), ref),
                 "image_lmdb_hdf5 crop + mean file": (str(cropped), str(out / "w_crop.caffemodel"), ref_crop)}, \
        list_paths(out / "images.txt", str(out))[:32]


def _folder(tmp_path, net, weights, cwd=None, **kwargs):
    model = str(tmp_path / "model")
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        write_model_folder(net, weights, model, **kwargs)
    finally:
        os.chdir(old)
    return model


def _check_both_engines(model_dir, images, ref, table_row):
    got = {}
    for engine in ("caffe", "opencv"):
        model = Model.load(model_dir, engine=engine)
        got[engine] = model.predict_proba(images, batch_size=7)
        assert got[engine].shape == ref.shape
        diff = float(np.abs(got[engine] - ref).max())
        print("equality %s %s %.2g" % (engine, table_row, diff))
        assert diff < TOL, (engine, diff)
    assert np.abs(got["caffe"] - got["opencv"]).max() < TOL
    assert np.abs(ref - ref.mean(0)).max() > 1e-3             # the images give different outputs


def test_multilabel_images_greyscale_crop_without_resize(tmp_path, images_example):
    out, net, weights, images, ref = images_example
    model = _folder(tmp_path, net, weights)
    spec = read_spec(model)
    assert spec["input"]["shape"] == [1, 28, 28] and spec["input"]["resize"] is None and spec["input"]["crop"] == 28
    assert spec["input"]["scale"] == 0.00390625 and not spec["input"]["color"]
    assert spec["class_names"] == make_images.CLASS_NAMES and spec["activation"] == "Softmax"
    assert spec["provenance"]["train_net"] == os.path.abspath(net) and spec["provenance"]["caffe"]
    assert sorted(os.listdir(model)) == ["deploy.prototxt", "model.json", "weights.caffemodel"]
    _check_both_engines(model, images, ref, "multilabel_images")
    # decoded arrays give what paths give
    arrays = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in images[:5]]
    np.testing.assert_allclose(Model.load(model).predict_proba(arrays), ref[:5], atol=TOL)


@pytest.mark.parametrize("case", ["ours"] + sorted(IMAGE_DATA_CASES))
def test_colour_resize_with_crop_and_means(tmp_path, colour_cases, case):
    _, refs = colour_cases
    net, weights, images, ref = refs[case]
    model = _folder(tmp_path, net, weights)
    spec = read_spec(model)
    assert spec["input"]["crop"] == (0 if case == "image_data_mean_file" else 28)
    assert spec["input"]["resize"] == {"ours": [30, 34], "image_data_crop": [31, 33]}.get(case, [28, 28])
    assert (spec["input"]["mean_file"] == "mean.npy") == (case == "image_data_mean_file")
    _check_both_engines(model, images, ref, case)


@pytest.mark.parametrize("case", ["image_lmdb_hdf5", "image_lmdb_hdf5 crop + mean file"])
def test_lmdb_data_layer(tmp_path, lmdb_example, case):
    out, cases, images = lmdb_example
    net, weights, ref = cases[case]
    model = _folder(tmp_path, net, weights, cwd=str(out))
    spec = read_spec(model)
    assert spec["input"]["resize"] == [16, 16] and spec["input"]["scale"] == 0.00390625 and spec["input"]["color"]
    assert spec["input"]["crop"] == (12 if "crop" in case else 0)
    _check_both_engines(model, images, ref, case)


def test_opencv_engine_imports_no_caffe(tmp_path, images_example):
    out, net, weights, images, ref = images_example
    model = _folder(tmp_path, net, weights)
    code = ("import sys, json; sys.modules['caffe'] = None\n"
            "from softmax_multilabel_layer import Model\n"
            "m = Model.load(sys.argv[1], engine='opencv')\n"
            "p = m.predict_proba(sys.argv[2:])\n"
            "assert not [k for k, v in sys.modules.items() if v is not None and k.split('.')[0] == 'caffe']\n"
            "print(json.dumps(p.tolist()))\n"
            "print(json.dumps(m.predict(sys.argv[2:])))\n")
    done = subprocess.run([sys.executable, "-c", code, model] + images[:4], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    np.testing.assert_allclose(json.loads(lines[0]), ref[:4], atol=TOL)
    names = make_images.CLASS_NAMES
    assert json.loads(lines[1]) == [[names[int(np.argmax(r))]] for r in ref[:4]]        # top-k:1, softmax


def test_folder_is_never_written_over_foreign_files(tmp_path, images_example, capsys):
    out, net, weights, _, _ = images_example
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["deploy", net, "--weights", weights, "--out", str(foreign)]) == 2
    assert "not a model folder written by deploy; not overwritten" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
    model = tmp_path / "model"
    assert main(["deploy", net, "--weights", weights, "--out", str(model)]) == 0
    assert "wrote %s: 10 classes" % model in capsys.readouterr().out
    first = json.loads((model / "model.json").read_text())["provenance"]["created"]
    assert main(["deploy", net, "--weights", weights, "--out", str(model), "--rule", "mass:0.9"]) == 0
    assert json.loads((model / "model.json").read_text())["rule"] == "mass:0.9" and first
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []          # no temporary left behind
    assert main(["deploy", net, "--weights", str(tmp_path / "none.caffemodel"), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights file" in err and "does not exist" in err
    assert not (tmp_path / "m2").exists()


def test_undescribed_input_names_the_input_options(tmp_path, capsys):
    net = os.path.join(REPO, "prototxt", "digits", "softmax_multilabel_train_val.prototxt")
    caffe.set_random_seed(SEED)
    deploy = tmp_path / "d.prototxt"
    assert main(["deploy", net, "--input-shape", "1,1,24,24", "-o", str(deploy)]) == 0
    weights = str(tmp_path / "w.caffemodel")
    caffe.Net(str(deploy), caffe.TEST).save(weights)
    args = ["deploy", net, "--input-shape", "1,1,24,24", "--weights", weights, "--out", str(tmp_path / "m")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot describe the input" in err and "HDF5Data" in err
    assert "--input-resize H,W" in err and "--input-scale S" in err
    assert not (tmp_path / "m").exists()
    assert main(args + ["--input-scale", "0.00390625", "--input-resize", "24,24"]) == 0
    spec = read_spec(str(tmp_path / "m"))
    assert spec["input"]["scale"] == 0.00390625 and spec["input"]["from"] == "the --input-* options"
    img = np.random.default_rng(0).integers(0, 256, (30, 20), dtype=np.uint8)
    x = Model.load(str(tmp_path / "m")).preprocess(img)
    np.testing.assert_array_equal(x[0], cv2.resize(img, (24, 24)).astype(np.float32) * np.float32(0.00390625))


def test_model_errors(tmp_path, images_example):
    out, net, weights, images, _ = images_example
    model = _folder(tmp_path, net, weights)
    with pytest.raises(MultilabelLossError, match="engine 'tf': expected one of caffe, opencv"):
        Model.load(model, engine="tf")
    with pytest.raises(MultilabelLossError, match=r"is not a model folder: .*model.json"):
        Model.load(str(tmp_path))
    m = Model.load(model)
    with pytest.raises(MultilabelLossError, match="no calibrated thresholds"):
        m.predict(images[:1], rule="thresholds")
    with pytest.raises(MultilabelLossError, match="batch_size must be an integer >= 1, got -1"):
        m.predict_proba(images[:1], batch_size=-1)
    with pytest.raises(MultilabelLossError, match=r"image array is 20x20, smaller than the model's input 28x28"):
        m.predict_proba([np.zeros((20, 20), np.uint8)])


# ---------------------------------------------------------------------------------------------------------------
# softmax-multilabel predict MODEL/

def test_predict_command_equals_the_test_net(tmp_path, images_example, capsys):
    """predict MODEL/ --list test.txt (training-list format, labels ignored) gives the TEST net's probabilities;
    CSV is quoted so class names with spaces and commas survive; folders are searched recursively."""
    out, net, weights, images, ref = images_example
    names = ["digit %d, written" % c for c in range(10)]                # spaces and commas
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    model = str(tmp_path / "model")
    assert main(["deploy", net, "--weights", weights, "--out", model, "--class-names",
                 str(tmp_path / "names.txt")]) == 0
    capsys.readouterr()
    for engine in ("caffe", "opencv"):
        assert main(["predict", model, "--list", str(out / "test.txt"), "--root-folder", str(out) + "/",
                     "--format", "jsonl", "--engine", engine, "--batch-size", "33"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["path"] for r in rows] == images
        got = np.array([[r["probabilities"][n] for n in names] for r in rows])
        assert np.abs(got - ref).max() < TOL, engine
        assert [r["labels"] for r in rows] == [[names[int(np.argmax(p))]] for p in ref]
    assert main(["predict", model, "--rule", "top-k:2", str(out / "test")]) == 0          # images after options
    import csv
    table = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert table[0] == ["path", "labels"] + names
    assert [row[0] for row in table[1:]] == sorted(images)
    by_path = {p: r for p, r in zip(images, ref, strict=True)}
    for row in table[1:]:
        p = by_path[row[0]]
        assert json.loads(row[1]) == [names[c] for c in np.argsort(-p, kind="stable")[:2]]
        assert np.abs(np.array(row[2:], float) - p).max() < TOL


def test_predict_bad_input_is_one_line(tmp_path, images_example, capsys):
    out, net, weights, images, _ = images_example
    model = _folder(tmp_path, net, weights)
    cases = [
        (["--model", net, "--weights", weights, images[0]], "has no Input layer: it is not a deploy net"),
        ([model, images[0], "--batch-size", "-1"], "--batch-size -1: expected an integer >= 1"),
        ([net, images[0]], "is not a model folder"),
        ([model, images[0], str(tmp_path / "nope.jpg")], "1 of 2 images do not exist"),
        ([model, "--list", str(tmp_path / "nope.txt")], "nope.txt' not found"),
        ([model, images[0], "--rule", "thresholds"], "no calibrated thresholds"),
        ([model], "no images"),
    ]
    yeast = os.path.join(REPO, "prototxt", "yeast", "mlp_deploy.prototxt")
    caffe.set_random_seed(SEED)
    caffe.Net(yeast, caffe.TEST).save(str(tmp_path / "mlp.caffemodel"))
    cases.append((["--model", yeast, "--weights", str(tmp_path / "mlp.caffemodel"), images[0]], "not images"))
    for args, message in cases:
        assert main(["predict"] + args) == 2, args
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err, (args, captured)


# ---------------------------------------------------------------------------------------------------------------
# softmax-multilabel evaluate MODEL/ --list

def test_evaluate_model_folder_on_a_list_and_calibrate(tmp_path, images_example, capsys):
    """evaluate MODEL/ --list runs every image once (the list's count, in --json), equal to the metrics of the
    TEST net's own probabilities; --calibrate writes thresholds into model.json, which predict then uses."""
    from softmax_multilabel_layer.evaluation.report import report
    from softmax_multilabel_layer.evaluation.rules import calibrate_thresholds
    out, net, weights, images, ref = images_example
    model = _folder(tmp_path, net, weights)
    with open(out / "test.txt") as f:
        lines = [line.split() for line in f if line.strip() and not line.startswith("#")]
    y = np.array([[n in line[1:] for n in make_images.CLASS_NAMES] for line in lines])
    before = (tmp_path / "model" / "model.json").read_text()
    # a list of 100 with batches of 64: no wrap-around, no sample twice
    args = ["evaluate", model, "--list", str(out / "test.txt"), "--root-folder", str(out) + "/"]
    assert main(args + ["--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert "test.txt: 100 samples (every image of the list, once)" in captured.out
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["samples"] == 100 and got["list_samples"] == 100
    expected = report(y, ref, "top-k:1")
    assert abs(got["mAP"] - expected["mAP"]) < 1e-6 and abs(got["f1_macro"] - expected["f1_macro"]) < 1e-6
    assert (tmp_path / "model" / "model.json").read_text() == before           # no --calibrate: untouched
    assert main(args + ["--calibrate", "--engine", "opencv"]) == 0
    assert "wrote per-class thresholds" in capsys.readouterr().out
    spec = read_spec(model)
    want, _ = calibrate_thresholds(y, ref)
    got_t = np.array([np.inf if v is None else v for v in spec["thresholds"]])
    assert spec["rule"] == "thresholds" and spec["calibration"]["samples"] == 100
    assert np.abs(np.where(np.isfinite(want), got_t - want, 0)).max() < 1e-5
    assert (np.isfinite(got_t) == np.isfinite(want)).all()
    # predict uses the thresholds by default
    assert main(["predict", model] + images[:20] + ["--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    own = Model.load(model).predict_proba(images[:20])        # thresholds sit between scores ~1e-8 apart here
    assert sum(len(r["labels"]) != 1 for r in rows) > 0          # not the top-k:1 of before
    for r, p in zip(rows, own, strict=True):
        assert set(r["labels"]) == {make_images.CLASS_NAMES[c] for c in np.flatnonzero(p >= got_t)}
    assert Model.load(model).predict(images[:20]) == [r["labels"] for r in rows]
    assert [p for p in os.listdir(model) if p.startswith(".")] == []             # the json was renamed in


def test_evaluate_model_folder_errors(tmp_path, images_example, capsys):
    out, net, weights, images, _ = images_example
    model = _folder(tmp_path, net, weights)
    (tmp_path / "bad.txt").write_text("test/00000.jpg seventeen\n")
    (tmp_path / "missing.txt").write_text("test/99999.jpg two\n")
    cases = [([model], "give --list FILE"),
             ([model, "--list", str(tmp_path / "none.txt")], "--list %s does not exist" % (tmp_path / "none.txt")),
             ([model, "--list", str(out / "test.txt"), "--iters", "3"], "--iters does not go with a model folder"),
             ([model, "--list", str(tmp_path / "bad.txt"), "--root-folder", str(out)], "unknown class name"),
             ([model, "--list", str(tmp_path / "missing.txt"), "--root-folder", str(out)], "do not exist"),
             (["--list", str(out / "test.txt")], "go with a model folder")]
    for args, message in cases:
        assert main(["evaluate"] + args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (args, err)


def test_deploy_names_a_layer_opencv_cannot_run(tmp_path, capsys):
    """OpenCV's DNN has no Threshold layer: deploy warns naming it, and engine="opencv" refuses the folder."""
    train = tmp_path / "train.prototxt"
    train.write_text("""layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 1 dim: 4 dim: 4 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "step" type: "Threshold" bottom: "fc" top: "fc2" }
""" + LOSS.replace('bottom: "scores"', 'bottom: "fc2"'))
    caffe.set_random_seed(SEED)
    caffe.Net(str(train), caffe.TEST).save(str(tmp_path / "w.caffemodel"))
    model = str(tmp_path / "model")
    assert main(["deploy", str(train), "--weights", str(tmp_path / "w.caffemodel"), "--out", model,
                 "--input-scale", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: OpenCV's DNN cannot read" in err and 'layer "step" of type "Threshold"' in err
    assert read_spec(model)["opencv"] is False
    with pytest.raises(MultilabelLossError, match=r"OpenCV's DNN cannot run this net.*Threshold"):
        Model.load(model, engine="opencv")
    assert Model.load(model, engine="caffe").predict_proba([np.zeros((4, 4), np.uint8)]).shape == (1, 3)


# ---------------------------------------------------------------------------------------------------------------
# softmax-multilabel evaluate MODEL/ --lmdb / --hdf5

def _labelled_list(out, path):
    """images.txt of examples/image_lmdb_hdf5 with the labels of labels.h5 (class indices): the same images."""
    import h5py
    with h5py.File(out / "labels.h5", "r") as f:
        labels = np.asarray(f["label"])
    paths = list_paths(out / "images.txt", "")
    path.write_text("".join("%s %s\n" % (p, " ".join(str(c) for c in np.flatnonzero(row)))
                            for p, row in zip(paths, labels, strict=True)))
    return labels


@pytest.mark.parametrize("case", ["image_lmdb_hdf5", "image_lmdb_hdf5 crop + mean file"])
def test_evaluate_model_folder_on_lmdb_and_hdf5_equals_the_list(tmp_path, lmdb_example, case, capsys):
    """On the example's LMDB (convert_imageset, labels in HDF5), on convert's LMDB pair and on convert's HDF5 files,
    evaluate MODEL/ runs every record once and gives the --list evaluation of the same images: the same metrics,
    and the images it reads give the same probabilities (1e-5)."""
    from softmax_multilabel_layer.evaluation import sources
    out, cases, _ = lmdb_example
    net, weights, _ = cases[case]
    model = _folder(tmp_path, net, weights, cwd=str(out))
    labels = _labelled_list(out, tmp_path / "list.txt")
    assert main(["convert", str(tmp_path / "list.txt"), "--root-folder", str(out) + "/", "--num-classes", "4",
                 "--format", "lmdb", "--out", str(tmp_path / "conv_lmdb")]) == 0
    assert main(["convert", str(tmp_path / "list.txt"), "--root-folder", str(out) + "/", "--num-classes", "4",
                 "--format", "hdf5", "--out", str(tmp_path / "conv_h5")]) == 0
    capsys.readouterr()
    runs = {"list": ["--list", str(tmp_path / "list.txt"), "--root-folder", str(out) + "/"],
            "recipe lmdb": ["--lmdb", str(out / "images_lmdb"), "--label-source", str(out / "labels_h5.txt")],
            "convert lmdb": ["--lmdb", str(tmp_path / "conv_lmdb" / "images_lmdb")],      # labels_lmdb beside it
            "convert hdf5": ["--hdf5", str(tmp_path / "conv_h5" / "list.txt")]}
    got = {}
    for name, args in runs.items():
        assert main(["evaluate", model, "--json", str(tmp_path / "m.json")] + args) == 0, name
        printed = capsys.readouterr().out
        assert ": 40 samples (every " in printed, (name, printed)            # 40 records, batches of 64: once
        got[name] = json.loads((tmp_path / "m.json").read_text())
        assert got[name]["samples"] == 40 and got[name].get("list_samples", got[name].get("source_samples")) == 40
    for name in runs:
        for key in ("mAP", "f1_macro", "f1_micro", "ranking_loss", "coverage", "hamming_loss"):
            if key in got["list"]:
                assert abs(got[name][key] - got["list"][key]) < 1e-9, (name, key)
    # the probabilities of the images each source gives, against the list's (paths decoded by the model)
    m = Model.load(model)
    ref = m.predict_proba(list_paths(out / "images.txt", str(out)))
    assert np.abs(ref - ref.mean(0)).max() > 1e-3
    for name, images in (("recipe lmdb", sources.lmdb_images(str(out / "images_lmdb"), 64)),
                         ("convert lmdb", sources.lmdb_images(str(tmp_path / "conv_lmdb" / "images_lmdb"), 16)),
                         ("convert hdf5", sources.hdf5_data(sources.hdf5_files(str(tmp_path / "conv_h5" / "list.txt"),
                                                                               "--hdf5"), 16, True))):
        p = np.concatenate([m.predict_proba(batch) for batch in images])
        print("evaluate source equality %s %s %.2g" % (case, name, float(np.abs(p - ref).max())))
        assert p.shape == ref.shape and np.abs(p - ref).max() < TOL, name
    assert np.array_equal(sources.labels_from(str(tmp_path / "conv_lmdb" / "labels_lmdb"), "x"), labels)


def test_evaluate_model_folder_source_errors_before_any_net(tmp_path, lmdb_example, capsys):
    """Bad sources are one line, exit 2, found before the net is built (the weights are gone: Model.load would fail
    with another message)."""
    import h5py
    out, cases, _ = lmdb_example
    net, weights, _ = cases["image_lmdb_hdf5"]
    model = _folder(tmp_path, net, weights, cwd=str(out))
    os.remove(os.path.join(model, "weights.caffemodel"))
    with h5py.File(tmp_path / "short.h5", "w") as f:
        f.create_dataset("label", data=np.zeros((3, 4), np.float32))
    (tmp_path / "h5list.txt").write_text(str(tmp_path / "short.h5") + "\n" + str(tmp_path / "gone.h5") + "\n")
    lmdb_dir = str(out / "images_lmdb")
    cases = [(["--lmdb", str(tmp_path / "none")], "--lmdb %s does not exist" % (tmp_path / "none")),
             (["--lmdb", str(tmp_path)], "is not an LMDB folder (no data.mdb in it)"),
             (["--lmdb", lmdb_dir], "give its labels with --label-source"),
             (["--lmdb", lmdb_dir, "--label-source", str(tmp_path / "short.h5")],
              "--label-source %s holds 3 label rows but %s holds 40 samples" % (tmp_path / "short.h5", lmdb_dir)),
             (["--hdf5", str(tmp_path / "short.h5")], "has no dataset 'data' (it has label)"),
             (["--hdf5", str(tmp_path / "h5list.txt")], "line 2: HDF5 file %s does not exist" % (tmp_path / "gone.h5")),
             (["--lmdb", lmdb_dir, "--list", str(out / "images.txt")], "give one of --list, --lmdb, --hdf5"),
             (["--lmdb", lmdb_dir, "--iters", "2"], "--iters does not go with a model folder"),
             (["--lmdb", lmdb_dir, "--root-folder", "x"], "--root-folder goes with --list"),
             (["--hdf5", str(tmp_path / "short.h5"), "--label-source", "x"], "--label-source goes with --lmdb")]
    for args, message in cases:
        assert main(["evaluate", model] + args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (args, err)
    assert main(["evaluate", "--lmdb", lmdb_dir]) == 2 and "go with a model folder" in capsys.readouterr().err
