"""Decision rules, per-class threshold calibration, image preprocessing and `softmax-multilabel predict`."""
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from softmax_multilabel_layer.cli import main
from softmax_multilabel_layer.evaluation.netio import preprocess_image
from softmax_multilabel_layer.evaluation.rules import (
    calibrate_thresholds,
    class_thresholds,
    load_thresholds,
    mass,
    parse_rule,
    predict_labels,
    save_thresholds,
    threshold,
    top_k,
)
from softmax_multilabel_layer.params import MultilabelLossError


def softmax_scores(rng, n, c):
    y = rng.random((n, c)) < 0.15
    y[np.arange(n), rng.integers(0, c, n)] = True
    z = rng.normal(size=(n, c)) + 2.0 * y
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, p


def _ranked(row):
    return sorted(range(len(row)), key=lambda c: (-row[c], c))


def test_rules_against_loops():
    rng = np.random.default_rng(0)
    _, p = softmax_scores(rng, 200, 9)
    p = np.round(p, 2)                         # ties
    p /= p.sum(1, keepdims=True)
    for q in (0.3, 0.5, 0.9, 1.0):
        got = predict_labels(p, mass(q))
        for i, row in enumerate(p):
            total = 0.0
            for c in _ranked(row):
                if total >= q - 1e-12:
                    break
                last, total = c, total + row[c]
            want = {c for c in range(len(row)) if row[c] >= row[last]}     # a tie at the last place: all of it
            assert set(np.flatnonzero(got[i])) == want, (q, i)
    for k in (1, 3):
        got = predict_labels(p, top_k(k))
        assert all(set(np.flatnonzero(got[i])) == {c for c in range(9) if row[c] >= row[_ranked(row)[k - 1]]}
                   for i, row in enumerate(p))
    assert (predict_labels(p, top_k(3)).sum(1) > 3).any()       # the ties above are real
    np.testing.assert_array_equal(predict_labels(p, threshold(0.2)), p >= 0.2)
    t = rng.random(9) * 0.3
    np.testing.assert_array_equal(predict_labels(p, class_thresholds(t)), p >= t)


def test_mass_gives_all_m_labels_of_a_one_over_m_target():
    p = np.array([[0.45, 0.45, 0.05, 0.05], [0.97, 0.01, 0.01, 0.01]])
    np.testing.assert_array_equal(predict_labels(p, "mass:0.9"), [[1, 1, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(MultilabelLossError, match=r"rule mass: needs softmax probabilities .* sample 0 sums to 2"):
        predict_labels(np.ones((2, 2)), "mass:0.9")


@pytest.mark.parametrize("text, match", [("top-k:0", "k must be an integer >= 1"),
                                         ("mass:1.5", r"q must be in \(0, 1\]"),
                                         ("threshold:x", "x is not a number"), ("best:3", "unknown rule 'best:3'"),
                                         ("thresholds:/nonexistent.json", "No such file")])
def test_bad_rules(text, match):
    with pytest.raises(MultilabelLossError, match=match):
        parse_rule(text)


def test_calibrated_thresholds_maximize_f1(tmp_path):
    rng = np.random.default_rng(1)
    y, p = softmax_scores(rng, 400, 8)
    p = np.round(p, 2)                                  # ties inside classes
    y[:, 7] = False                                     # a class with no positive
    t, best = calibrate_thresholds(y, p)
    for c in range(7):
        at_t = f1_score(y[:, c], p[:, c] >= t[c])
        assert abs(at_t - best[c]) < 1e-12
        candidates = [f1_score(y[:, c], p[:, c] >= v) for v in np.unique(p[:, c])]
        assert abs(best[c] - max(candidates)) < 1e-12
        assert not np.isin(t[c], p[:, c]) or t[c] == p[:, c].min()     # half-way between two scores
    assert t[7] == np.inf and best[7] == 0.0
    path = str(tmp_path / "t.json")
    save_thresholds(path, t, best, ["c%d" % i for i in range(8)])
    with open(path) as f:
        data = json.load(f)
    assert data["thresholds"][7] is None and data["class_names"][0] == "c0"
    np.testing.assert_array_equal(load_thresholds(path), t)
    rule = parse_rule("thresholds:" + path)
    np.testing.assert_array_equal(predict_labels(p, rule), p >= t)
    with pytest.raises(MultilabelLossError, match="8 thresholds but the scores have C=3 classes"):
        predict_labels(p[:, :3], rule)


def _png(path, array):
    from PIL import Image
    Image.fromarray(array).save(path)
    return str(path)


def test_preprocess_image(tmp_path):
    rgb = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3) * 2
    path = _png(tmp_path / "a.png", rgb)
    x = preprocess_image(path, (3, 3, 4), resize=(5, 6), mean=[10, 20, 30], scale=0.5)
    crop = rgb[1:4, 1:5].astype(np.float32).transpose(2, 0, 1)[::-1]          # centre crop, BGR
    np.testing.assert_array_equal(x, (crop - np.array([10, 20, 30], np.float32)[:, None, None]) * 0.5)
    rgb_x = preprocess_image(path, (3, 5, 6), bgr=False)
    np.testing.assert_array_equal(rgb_x, rgb.transpose(2, 0, 1))
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(MultilabelLossError, match=r"cannot read image .*bad\.jpg"):
        preprocess_image(str(tmp_path / "bad.jpg"), (3, 4, 4))


def test_preprocess_image_equals_caffe_image_data(tmp_path):
    """predict sees what training saw: a JPEG resized (OpenCV's bilinear), centre-cropped, mean and
    scale applied, equal to Caffe's own ImageData layer in TEST on the same file."""
    import caffe
    from PIL import Image
    rgb = np.random.default_rng(4).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    (tmp_path / "list.txt").write_text("a.jpg 0\n")
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('layer { name: "d" type: "ImageData" top: "data" top: "label" '
                        'transform_param { crop_size: 6 mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5 } '
                        'image_data_param { source: "%s" root_folder: "%s/" batch_size: 1 new_height: 8 '
                        'new_width: 9 } }' % (tmp_path / "list.txt", tmp_path))
    net = caffe.Net(str(net_path), caffe.TEST)
    net.forward()
    x = preprocess_image(str(path), (3, 6, 6), resize=(8, 9), mean=[104, 117, 123], scale=0.5)
    np.testing.assert_array_equal(x, net.blobs["data"].data[0])


def test_predict_command(tmp_path, capsys):
    import caffe
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text("""name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
""")
    caffe.set_random_seed(3)
    net = caffe.Net(str(deploy), caffe.TEST)
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    rng = np.random.default_rng(2)
    images = [_png(tmp_path / ("im%d.png" % i), rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)) for i in range(3)]
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "list.txt").write_text("\n".join(images[1:]) + "\n")
    base = ["predict", "--model", str(deploy), "--weights", weights, "--class-names", str(tmp_path / "names.txt"),
            "--batch-size", "2", "--scale", "0.01"]
    assert main(base + [images[0], "--list", str(tmp_path / "list.txt"), "--rule", "top-k:2", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == images
    for r, path in zip(rows, images, strict=True):
        x = preprocess_image(path, (3, 4, 4), scale=0.01)
        net.blobs["data"].data[...] = x[None]
        p = net.forward()["prob"][0]
        order = _ranked(p)[:2]
        assert r["labels"] == [["cat", "dog", "bird"][c] for c in order]
        np.testing.assert_allclose(r["scores"], p[order], atol=1e-6)
    assert main(base + images + ["--rule", "threshold:0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "path,labels,cat,dog,bird" and len(lines) == 4
    assert main(base + [images[0], str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 2 images do not exist" in err and "missing.png" in err
    (tmp_path / "bad.png").write_text("not an image")
    assert main(base + [images[0], str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read image" in err and "bad.png" in err
