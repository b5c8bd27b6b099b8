"""softmax-multilabel convert: HDF5 and LMDB outputs read back by Caffe's own HDF5Data and Data layers."""
import io
import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from image_files import label_sets, pattern_image, write_images, write_list

from softmax_multilabel_layer import cli
from softmax_multilabel_layer.data import convert as C
from softmax_multilabel_layer.data.image_data import load_image
from softmax_multilabel_layer.params import MultilabelLossError

from caffe_nets import net_from_text

N, NUM_CLASSES = 13, 6


@pytest.fixture
def image_list(tmp_path):
    images = [pattern_image(i, (18 + i % 2, 22)) for i in range(N)]
    paths = write_images(tmp_path / "img", images[:7], ".jpg") + write_images(tmp_path / "png", images[7:], ".png")
    labels = label_sets(N, NUM_CLASSES, seed=3)
    return write_list(tmp_path / "list.txt", paths, labels), paths, labels


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def layers(stdout):
    """The prototxt convert printed."""
    return stdout.split("# layers for your train_val prototxt (TRAIN and TEST phases):\n")[1]


def read_net(tmp_path, prototxt, iterations, blobs):
    net = net_from_text(tmp_path, prototxt)
    got: dict[str, list[np.ndarray]] = {b: [] for b in blobs}
    for _ in range(iterations):
        net.forward()
        for b in blobs:
            got[b].append(net.blobs[b].data.copy())
    return {b: np.concatenate(v) for b, v in got.items()}


def expected(paths, labels, order, size=(20, 24), is_color=True):
    data = np.stack([load_image(paths[i], is_color, *size).transpose(2, 0, 1) for i in order]).astype(np.float32)
    dense = np.zeros((len(order), NUM_CLASSES), np.float32)
    for row, i in enumerate(order):
        dense[row, labels[i]] = 1
    return data, dense


def test_hdf5_split_files_read_by_hdf5data(tmp_path, image_list):
    source, paths, labels = image_list
    out = tmp_path / "h5"
    code, stdout, stderr = run_cli("convert", source, "--out", str(out), "--format", "hdf5", "--num-classes", "6",
                                   "--new-height", "20", "--new-width", "24", "--max-file-mb", "0.006",
                                   "--batch-size", "13", "--shuffle", "--seed", "5")
    assert code == 0, stderr
    files = sorted(out.glob("part-*.h5"))
    assert len(files) == 4                                  # 1440 + 24 bytes a row, < 6000 bytes a file: 4 rows
    for f in files:
        assert f.stat().st_size < 6000 + 8192               # + HDF5 headers: small next to the 950 MB default
        with h5py.File(f, "r") as h:
            assert h["data"].dtype == np.uint8 and h["data"].shape[1:] == (3, 20, 24)
    assert "converted 13 images" in stdout and "verified counts: data 13, label 13" in stdout
    assert re.search(r"convert: 13/13 images \(100%\)", stderr)
    prototxt = layers(stdout)
    got = read_net(tmp_path, prototxt, 1, ["data", "label"])
    order = np.random.default_rng(5).permutation(N)
    data, dense = expected(paths, labels, order)
    np.testing.assert_array_equal(got["data"], data)       # HDF5Data turns the uint8 pixels into floats exactly
    np.testing.assert_array_equal(got["label"], dense)


def test_hdf5_indices_with_weights(tmp_path):
    paths = write_images(tmp_path / "img", [pattern_image(i, (8, 8)) for i in range(3)])
    source = tmp_path / "list.txt"
    source.write_text("%s 4 1:0.5\n%s\n%s 2:2\n" % tuple(paths))
    summary = C.convert(str(source), str(tmp_path / "h5"), "hdf5", num_classes=5, label_format="indices",
                        max_labels=2, hdf5_dtype="float32", batch_size=3, stream=io.StringIO())
    got = read_net(tmp_path, summary["prototxt"], 1, ["data", "label", "label_weight"])
    np.testing.assert_array_equal(got["label"], [[4, 1], [-1, -1], [2, -1]])
    np.testing.assert_array_equal(got["label_weight"], [[1, 0.5], [0.0, 0], [2.0, 0]])
    assert got["data"].shape == (3, 3, 8, 8)


@pytest.mark.parametrize("encoded", [False, True])
def test_lmdb_read_by_two_data_layers(tmp_path, image_list, encoded):
    source, paths, labels = image_list
    out = tmp_path / "lmdb"
    argv = ["convert", source, "--out", str(out), "--format", "lmdb", "--num-classes", "6",
            "--new-height", "20", "--new-width", "24", "--batch-size", "13"] + (["--encoded"] if encoded else [])
    code, stdout, stderr = run_cli(*argv)
    assert code == 0, stderr
    assert "verified counts: images_lmdb 13, labels_lmdb 13" in stdout
    prototxt = layers(stdout)
    got = read_net(tmp_path, prototxt, 2, ["data", "label"])
    data, dense = expected(paths, labels, list(range(N)) * 2)
    np.testing.assert_array_equal(got["data"], data)       # resized images are re-encoded as PNG: lossless
    np.testing.assert_array_equal(got["label"], dense)
    assert got["label"].shape == (26, NUM_CLASSES)


def test_lmdb_encoded_keeps_the_file_bytes_without_resize(tmp_path):
    import lmdb
    from caffe.proto import caffe_pb2
    paths = write_images(tmp_path / "img", [pattern_image(i, (10, 12)) for i in range(3)], ".jpg")
    source = write_list(tmp_path / "list.txt", paths, [[0], [1], []])
    C.convert(source, str(tmp_path / "db"), "lmdb", num_classes=2, encoded=True, stream=io.StringIO())
    env = lmdb.open(str(tmp_path / "db" / "images_lmdb"), readonly=True)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    assert [k.decode() for k, _ in items] == ["%08d_%s" % (i, p) for i, p in enumerate(paths)]
    for (_, value), path in zip(items, paths, strict=True):
        datum = caffe_pb2.Datum.FromString(value)
        assert datum.encoded and datum.data == Path(path).read_bytes()


def test_refuses_to_overwrite_then_overwrites(tmp_path, image_list):
    source = image_list[0]
    out = tmp_path / "h5"
    args = ["convert", source, "--out", str(out), "--format", "hdf5", "--num-classes", "6", "--new-height", "20",
            "--new-width", "24"]
    assert run_cli(*args)[0] == 0
    code, _, stderr = run_cli(*args)
    assert code == 2
    assert stderr == ("softmax-multilabel convert: error: output folder %s exists and is not empty; pass --overwrite "
                      "to replace it (a previous conversion)\n" % out)
    before = (out / "part-00000.h5").stat().st_ino
    code, stdout, stderr = run_cli(*(args + ["--overwrite"]))
    assert code == 0, stderr
    assert (out / "part-00000.h5").stat().st_ino != before          # a new file, moved into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h5", "img", "list.txt", "png"]   # no work folder left


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["hdf5", "lmdb"])
@pytest.mark.parametrize("marker", [False, True])
def test_overwrite_never_touches_a_folder_with_the_users_files(tmp_path, fmt, marker):
    """The folder given as --out holds the listed images and a notes file (and, in the second case, even a
    convert.json): --overwrite refuses it and every file is left as it was."""
    photos = tmp_path / "photos"
    paths = write_images(photos, [pattern_image(i, (10, 12)) for i in range(4)], ".jpg")
    (photos / "notes.txt").write_text("my notes\n")
    if marker:
        (photos / C.MANIFEST).write_text("{}")
    source = write_list(tmp_path / "list.txt", paths, [[0], [1], [2], []])
    before = snapshot(photos)
    code, stdout, stderr = run_cli("convert", source, "--out", str(photos), "--format", fmt, "--num-classes", "3",
                                   "--overwrite")
    assert code == 2 and stdout == ""
    assert stderr.startswith("softmax-multilabel convert: error: output folder %s holds listed image %r (%s:1); "
                             "convert never replaces a folder with your images in it" % (photos, paths[0], source))
    assert snapshot(photos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt", "photos"]


def test_overwrite_refuses_foreign_files_and_folders_not_made_by_convert(tmp_path, image_list):
    source = image_list[0]
    out = tmp_path / "out"
    args = ["convert", source, "--out", str(out), "--format", "hdf5", "--num-classes", "6", "--new-height", "20",
            "--new-width", "24", "--overwrite"]
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, stderr = run_cli(*args)
    assert code == 2 and "%s is not empty and was not made by convert (it has no convert.json)" % out in stderr
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert run_cli(*args)[0] == 0                       # an empty folder is fine
    (out / "notes.txt").write_text("mine")                  # the user adds a file to convert's output
    (out / "sub").mkdir()
    code, _, stderr = run_cli(*args)
    assert code == 2 and "holds files convert did not write (notes.txt, sub)" in stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "part-00000.h5").exists()


@pytest.mark.parametrize("fmt", ["hdf5", "lmdb"])
def test_resume_after_an_interruption_equals_a_fresh_run(tmp_path, image_list, monkeypatch, fmt):
    source, paths, labels = image_list
    monkeypatch.setattr(C, "CHUNK", 4)
    kw: dict[str, Any] = dict(num_classes=6, new_height=20, new_width=24, batch_size=13, max_file_bytes=4 * 1464,
                              stream=io.StringIO())
    good = Path(paths[9]).read_bytes()
    Path(paths[9]).write_bytes(b"broken")                   # the run stops at image 9
    out = tmp_path / "out"
    with pytest.raises(MultilabelLossError, match=r"cannot read or decode image '.*img_002.png' \(.*list.txt:10\)"):
        C.convert(source, str(out), fmt, **kw)
    assert not out.exists()                                 # nothing a Data layer could read at --out
    work = tmp_path / ".out.convert-partial"
    manifest = json.loads((work / C.MANIFEST).read_text())
    assert manifest["written"] == 8 and not manifest["complete"]
    with pytest.raises(MultilabelLossError, match=r"an interrupted conversion into .*out is in .*\.out\.convert-"
                                                  r"partial; pass --resume to continue it or --overwrite"):
        C.convert(source, str(out), fmt, **kw)
    Path(paths[9]).write_bytes(good)
    with pytest.raises(MultilabelLossError, match=r"new_height changed .*new_height was 20, now 21"):
        C.convert(source, str(out), fmt, resume=True, **dict(kw, new_height=21))
    summary = C.convert(source, str(out), fmt, resume=True, **kw)
    assert summary["resumed_from"] == 8
    assert not work.exists() and json.loads((out / C.MANIFEST).read_text())["complete"]
    got = read_net(tmp_path, summary["prototxt"], 1, ["data", "label"])
    data, dense = expected(paths, labels, range(N))
    np.testing.assert_array_equal(got["data"], data)
    np.testing.assert_array_equal(got["label"], dense)


def test_hdf5_needs_one_image_size(tmp_path, image_list):
    source = image_list[0]
    with pytest.raises(MultilabelLossError, match=r"img_001.jpg' \(.*list.txt:2\) is 19x22x3 but the first image "
                                                  r"is 18x22x3; .* --new-height and --new-width"):
        C.convert(source, str(tmp_path / "h5"), "hdf5", num_classes=6, stream=io.StringIO())


def test_bad_list_errors_name_the_command(tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("a.jpg 1\nb.jpg 9\n")
    code, _, stderr = run_cli("convert", str(source), "--out", str(tmp_path / "o"), "--format", "hdf5",
                              "--num-classes", "6")
    assert code == 2
    assert stderr == ("softmax-multilabel convert: error: %s:2: label 9 is out of range: expected a class index in "
                      "[0, 6) (num_classes 6; indices are 0-based)\n" % source)
    assert not (tmp_path / "o").exists()


SIGINT_SCRIPT = """
import sys, time
from softmax_multilabel_layer import cli
from softmax_multilabel_layer.data import convert
real = convert.load_image
def slow(*args, **kwargs):            # about 1 s for the whole list: time to press Ctrl-C
    time.sleep(0.005)
    return real(*args, **kwargs)
convert.load_image = slow
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("after_lines", [1, 4, 8])
def test_ctrl_c_stops_hdf5_conversion_says_so_and_exits_nonzero(tmp_path, after_lines):
    """A real SIGINT to a converting process, after the n-th progress line: the run stops, says so, exits 130,
    leaves nothing at --out, and --resume completes it. (Swallowed in 3 of 7 tries before.)"""
    import os
    import signal
    import subprocess
    import sys
    n = 400
    paths = write_images(tmp_path / "img", [pattern_image(i % 17, (16, 16)) for i in range(n)], ".png")
    source = write_list(tmp_path / "list.txt", paths, [[i % 3] for i in range(n)])
    script = tmp_path / "convert_slowly.py"
    script.write_text(SIGINT_SCRIPT)
    out = tmp_path / "h5"
    argv = ["convert", source, "--out", str(out), "--format", "hdf5", "--num-classes", "3", "--max-file-mb", "0.02"]
    proc = subprocess.Popen([sys.executable, str(script)] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("convert: ") and sum(s.startswith("convert: ") for s in seen) == after_lines:
            proc.send_signal(signal.SIGINT)
            break
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr[-2000:]
    assert re.search(r"softmax-multilabel convert: interrupted \(Ctrl-C\) after \d+ of 400 images; nothing was "
                     r"written to the output folder; the partial conversion is in .*\.h5\.convert-partial: run the "
                     r"same command with --resume", stderr), stderr[-2000:]
    assert "converted" not in stdout and "Traceback" not in stderr
    assert not out.exists()
    code, stdout, stderr = run_cli(*(argv + ["--resume"]))
    assert code == 0, stderr
    with open(out / "list.txt") as f:
        files = f.read().split()
    total = 0
    for name in files:
        with h5py.File(name, "r") as h:
            total += len(h["label"])
            np.testing.assert_array_equal(h["label"][:, 0], [float(i % 3 == 0) for i in range(total - len(
                h["label"]), total)])
    assert total == n


@pytest.mark.parametrize("fmt", ["hdf5", "lmdb"])
def test_skip_bad_images_leaves_them_out_reports_each_once_and_counts(tmp_path, image_list, fmt):
    source, paths, labels = image_list
    Path(paths[3]).write_bytes(b"broken")
    Path(paths[12]).write_bytes(b"\xff\xd8 broken too")          # the last image
    listed = paths[:5] + [str(tmp_path / "gone.jpg")] + paths[5:]
    text = Path(source).read_text().splitlines()
    Path(source).write_text("\n".join(text[:5] + ["%s 1" % listed[5]] + text[5:]) + "\n")
    out = tmp_path / "out"
    argv = ["convert", source, "--out", str(out), "--format", fmt, "--num-classes", "6", "--new-height", "20",
            "--new-width", "24", "--batch-size", "11", "--max-file-mb", "0.006", "--shuffle", "--seed", "2"]
    code, stdout, stderr = run_cli(*argv)
    assert code == 2 and not out.exists() and "MultilabelImageDataLayer" not in stderr
    assert stderr.startswith("softmax-multilabel convert: error: 1 of 14 image files listed in")
    assert stderr.endswith("; or set --skip-bad-images to leave them out\n")
    code, stdout, stderr = run_cli(*(argv + ["--skip-bad-images"]))
    assert code == 0, stderr
    reported = [line for line in stderr.splitlines() if "skip_bad_images" in line]
    assert len(reported) == 3 and "MultilabelImageDataLayer" not in stderr
    assert sorted(reported[:2]) == sorted(
        "softmax-multilabel convert: skip_bad_images: cannot read or decode image %r (%s:%d): missing, unreadable "
        "or not an image format OpenCV knows; left out" % (paths[i], source, line) for i, line in ((3, 4), (12, 14)))
    assert reported[2] == ("softmax-multilabel convert: skip_bad_images: left out 3 bad image(s) of the 14 listed "
                           "(missing: 1, cannot be decoded: 2)")
    assert "converted 11 images" in stdout
    got = read_net(tmp_path, layers(stdout), 1, ["data", "label"])
    # the written order: the seeded permutation of the 13 existing images, without the two bad ones
    permutation = np.random.default_rng(2).permutation(N)
    order = [int(i) for i in permutation if i not in (3, 12)]
    data, dense = expected(paths, labels, order)
    if fmt == "hdf5":
        np.testing.assert_array_equal(got["data"], data)
    np.testing.assert_array_equal(got["label"], dense)


def test_bad_image_without_the_option_names_convert_and_the_option(tmp_path, image_list):
    source, paths, _ = image_list
    Path(paths[4]).write_bytes(b"broken")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("convert", source, "--out", str(out), "--format", "hdf5", "--num-classes", "6",
                                   "--new-height", "20", "--new-width", "24")
    assert code == 2 and not out.exists()
    assert stderr.splitlines()[-1] == (
        "softmax-multilabel convert: error: cannot read or decode image %r (%s:5): missing, unreadable or not an "
        "image format OpenCV knows; pass --skip-bad-images to leave bad images out" % (paths[4], source))


def image_data_layer(tmp_path, paths, batch_size, is_color):
    """Caffe's own ImageData over the files (the reference for what the list means), tops cdata, clabel."""
    single = write_list(tmp_path / "single.txt", paths, [[0]] * len(paths))
    return ('layer { name: "ref" type: "ImageData" top: "cdata" top: "clabel" image_data_param { source: "%s" '
            'batch_size: %d is_color: %s } }\n' % (single, batch_size, str(is_color).lower()))


@pytest.mark.parametrize("fmt,extra", [("hdf5", []), ("lmdb", []), ("lmdb", ["--encoded"])],
                         ids=["hdf5", "lmdb", "lmdb-encoded"])
@pytest.mark.parametrize("is_color", [True, False], ids=["colour", "gray"])
def test_what_caffe_reads_equals_image_data_on_awkward_files(tmp_path, fmt, extra, is_color):
    """Grey, 16-bit, alpha and EXIF-rotated files among colour ones, converted and read back by Caffe's HDF5Data
    or Data layers (the printed layers, TRAIN and TEST phases), equal Caffe's ImageData on the same files: BGR
    order, channels, depth and orientation as ImageData decodes them."""
    import caffe
    from image_files import awkward_images
    paths = awkward_images(tmp_path / "img")
    labels = label_sets(len(paths), NUM_CLASSES, seed=4)
    source = write_list(tmp_path / "list.txt", paths, labels)
    argv = ["convert", source, "--out", str(tmp_path / "out"), "--format", fmt, "--num-classes", str(NUM_CLASSES),
            "--batch-size", str(len(paths))] + extra + ([] if is_color else ["--gray"])
    code, stdout, stderr = run_cli(*argv)
    assert code == 0, stderr
    text = layers(stdout)
    if extra:
        assert text.count("transform_param { %s: true mirror: false }" % ("force_color" if is_color
                                                                          else "force_gray")) == 2
    assert text.count("include { phase: TRAIN }") == text.count("include { phase: TEST }") >= 1
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(text + image_data_layer(tmp_path, paths, len(paths), is_color))
    for phase in (caffe.TRAIN, caffe.TEST):
        net = caffe.Net(str(net_file), phase)
        net.forward()
        reference = net.blobs["cdata"].data
        assert reference.shape == (6, 3 if is_color else 1, 24, 32)
        np.testing.assert_array_equal(net.blobs["data"].data, reference)
        dense = np.zeros((len(paths), NUM_CLASSES), np.float32)
        for row, labs in enumerate(labels):
            dense[row, labs] = 1
        np.testing.assert_array_equal(net.blobs["label"].data, dense)
    if extra and not is_color:       # the stored files are grey (Caffe's force_gray would hide a colour file)
        import cv2
        import lmdb
        from caffe.proto import caffe_pb2
        env = lmdb.open(str(tmp_path / "out" / "images_lmdb"), readonly=True)
        with env.begin() as txn:
            datums = [caffe_pb2.Datum.FromString(v) for _, v in txn.cursor()]
        env.close()
        for datum in datums:
            img = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
            assert datum.channels == 1 and img.ndim == 2 and img.dtype == np.uint8


def test_lmdb_labels_follow_their_images_under_shuffle(tmp_path, image_list):
    """--shuffle: every record's labels are those of the image under the same key (not of list position)."""
    import lmdb
    from caffe.proto import caffe_pb2
    source, paths, labels = image_list
    C.convert(source, str(tmp_path / "db"), "lmdb", num_classes=NUM_CLASSES, shuffle=True, seed=9,
              new_height=20, new_width=24, stream=io.StringIO())
    records = {}
    for name in ("images_lmdb", "labels_lmdb"):
        env = lmdb.open(str(tmp_path / "db" / name), readonly=True)
        with env.begin() as txn:
            records[name] = [(k.decode(), caffe_pb2.Datum.FromString(v)) for k, v in txn.cursor()]
        env.close()
    order = np.random.default_rng(9).permutation(N)
    assert order.tolist() != list(range(N))
    for pos, ((key, _), (label_key, datum)) in enumerate(zip(records["images_lmdb"], records["labels_lmdb"],
                                                              strict=True)):
        i = int(order[pos])
        assert key == label_key == "%08d_%s" % (pos, paths[i])
        assert np.flatnonzero(datum.float_data).tolist() == labels[i]


def _error(fn, *args, **kwargs):
    with pytest.raises(MultilabelLossError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_lmdb_indices_write_label_weights_under_root_folder_keys(tmp_path, image_list):
    """--label-format indices: a third LMDB of label weights, the keys relative to --root-folder, as
    convert_imageset names them; read back record by record (no net)."""
    import lmdb
    from caffe.proto import caffe_pb2
    _, paths, labels = image_list
    root = str(tmp_path)
    rel = [str(Path(p).relative_to(root)) for p in paths[:4]]
    lines = ["%s %s" % (rel[0], "1:0.25 4:2"), "%s %s" % (rel[1], "0"), "%s" % rel[2], "%s %s" % (rel[3], "5:0.5")]
    source = tmp_path / "weights.txt"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "w_lmdb"
    summary = C.convert(str(source), str(out), "lmdb", num_classes=NUM_CLASSES, root_folder=root + "/",
                        label_format="indices", max_labels=2, stream=io.StringIO())
    assert [Path(p).name for p in summary["databases"]] == ["images_lmdb", "labels_lmdb", "label_weights_lmdb"]
    records = {}
    for name in ("labels_lmdb", "label_weights_lmdb"):
        env = lmdb.open(str(out / name), readonly=True, lock=False)
        with env.begin() as txn:
            records[name] = [(key.decode(), list(caffe_pb2.Datum.FromString(value).float_data))
                             for key, value in txn.cursor()]
        env.close()
    keys = ["%08d_%s" % (i, r) for i, r in enumerate(rel)]
    assert records["labels_lmdb"] == list(zip(keys, [[1, 4], [0, -1], [-1, -1], [5, -1]], strict=True))
    assert records["label_weights_lmdb"] == list(zip(keys, [[0.25, 2], [1, 0], [0, 0], [0.5, 0]], strict=True))


def test_hdf5_parts_are_trimmed_and_carry_their_attributes(tmp_path, image_list):
    """Split files: each part is cut to the rows it holds and records num_classes and the label format."""
    source, paths, labels = image_list
    out = tmp_path / "parts"
    summary = C.convert(source, str(out), "hdf5", num_classes=NUM_CLASSES, new_height=20, new_width=24,
                        max_file_bytes=5 * 20 * 24 * 3, stream=io.StringIO())
    rows = []
    for part in summary["files"]:
        with h5py.File(part, "r") as f:
            assert dict(f.attrs) == {"num_classes": NUM_CLASSES, "label_format": "dense"}
            assert f["data"].shape[0] == f["label"].shape[0]
            rows.append(f["data"].shape[0])
            assert f["label"][...].sum(axis=1).tolist() == [len(labels[i]) for i in range(sum(rows[:-1]),
                                                                                         sum(rows))]
    assert sum(rows) == N and len(rows) > 1 and rows[-1] < rows[0]


def test_lmdb_key_is_convert_imagesets_and_at_most_500_bytes():
    assert C.lmdb_key(7, "a/b.jpg") == b"00000007_a/b.jpg"
    assert C.lmdb_key(0, "é" * 300) == ("00000000_" + "é" * 300).encode("utf-8")[:500]
    assert len(C.lmdb_key(123, "x" * 600)) == 500


def test_output_folder_checks_exactly(tmp_path, image_list):
    """The folder checks name the folder and what is wrong in it, exactly."""
    source, paths, labels = image_list
    images = C.parse_image_list(source, NUM_CLASSES)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert _error(C._check_own, str(a_file), "output folder", images) == (
        "softmax-multilabel convert: output folder %s exists and is not a folder" % a_file)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "n.txt").write_text("x")
    assert _error(C._check_own, str(notes), "output folder", images) == (
        "softmax-multilabel convert: output folder %s is not empty and was not made by convert (it has no "
        "convert.json); convert only replaces its own output: choose a new or empty folder" % notes)
    for count, names in ((5, "a0, a1, a2, a3, a4"), (6, "a0, a1, a2, a3, a4, ...")):
        own = tmp_path / ("own%d" % count)
        own.mkdir()
        (own / "convert.json").write_text("{}")
        (own / "part-00000.h5").write_text("")
        for k in range(count):
            (own / ("a%d" % k)).write_text("")
        assert _error(C._check_own, str(own), "work folder", images) == (
            "softmax-multilabel convert: work folder %s holds files convert did not write (%s); convert only "
            "replaces a folder that holds nothing but its own output: move them or choose another folder"
            % (own, names))
    # A sibling whose name starts like the images' folder holds none of them.
    sibling = tmp_path / "im"
    sibling.mkdir()
    assert C._images_inside(str(sibling), images) is None
    assert C._images_inside(str(tmp_path / "img"), images) == 0
    err = C._size_error(images, 1, (19, 22, 3), (18, 22, 3))
    assert str(err) == ("softmax-multilabel convert: image %r (%s:2) is 19x22x3 but the first image is 18x22x3; "
                        "an HDF5 dataset needs one size: pass --new-height and --new-width" % (paths[1], source))


def test_missing_lmdb_modules_are_named(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "lmdb", None)
    monkeypatch.setitem(sys.modules, "caffe.proto", None)
    assert _error(C._lmdb) == ("softmax-multilabel convert: --format lmdb needs the lmdb package (import of lmdb "
                               "halted; None in sys.modules): pip install lmdb")
    assert _error(C._datum_module) == (
        "softmax-multilabel convert: --format lmdb needs pycaffe's caffe.proto.caffe_pb2 (import of caffe.proto "
        "halted; None in sys.modules); run `make setup`")


def test_progress_notes_start_a_line_of_their_own_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    for stream, expected in ((Tty(), "\nskipped x\n"), (io.StringIO(), "skipped x\n")):
        C.Progress(3, stream=stream).note("skipped x")
        assert stream.getvalue() == expected
