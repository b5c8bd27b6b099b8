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


def preflight(prototxt):
    """Check, in Python, what Caffe would otherwise abort on (a glog CHECK ends the process): the printed layers
    parse, every batch_size is positive, and every source holds what its layer reads: for HDF5Data, list files of
    HDF5 files with each top as a dataset, all with the same positive number of rows; for Data layers, LMDBs of
    one phase with the same positive number of records under the same first and last keys."""
    import lmdb
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Parse(prototxt, caffe_pb2.NetParameter())
    assert len(net.layer) > 0
    ends: dict[int, set[tuple[int, bytes, bytes]]] = {}
    for layer in net.layer:
        if layer.type == "HDF5Data":
            assert layer.hdf5_data_param.batch_size > 0
            files = Path(layer.hdf5_data_param.source).read_text().split()
            assert files
            for name in files:
                with h5py.File(name, "r") as f:
                    rows = {f[top].shape[0] for top in layer.top}
                assert len(rows) == 1 and rows.pop() > 0, (name, list(layer.top))
        elif layer.type == "Data":
            assert layer.data_param.batch_size > 0 and layer.data_param.backend == caffe_pb2.DataParameter.LMDB
            env = lmdb.open(layer.data_param.source, readonly=True, lock=False)
            with env.begin() as txn:
                cursor = txn.cursor()
                assert cursor.first()
                first = cursor.key()
                cursor.last()
                ends.setdefault(layer.include[0].phase, set()).add((env.stat()["entries"], first, cursor.key()))
            env.close()
    assert all(len(e) == 1 for e in ends.values()), ends


def read_net(tmp_path, prototxt, iterations, blobs):
    preflight(prototxt)
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
    preflight(text)
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


# ---------------------------------------------------------------- the core, function by function (milliseconds)

def convert_parser():
    import argparse
    sub = argparse.ArgumentParser(prog="softmax-multilabel").add_subparsers()
    return sub, C.add_parser(sub)


def test_every_option_its_help_default_and_type_word_for_word():
    """The convert options a user reads in --help, each with its default, type and choices, exactly."""
    import argparse
    sub, p = convert_parser()
    got = {a.option_strings[0] if a.option_strings else a.dest: (a.help, a.default, a.type, a.choices, a.required,
                                                                  type(a).__name__) for a in p._actions}
    store, flag = "_StoreAction", "_StoreTrueAction"
    assert got == {
        "-h": ("show this help message and exit", "==SUPPRESS==", None, None, False, "_HelpAction"),
        "list": ("the list file", None, None, None, True, store),
        "--out": ("output folder", None, None, None, True, store),
        "--format": ("hdf5 or lmdb", None, None, ("hdf5", "lmdb"), True, store),
        "--num-classes": ("C (or give --class-names)", None, int, None, False, store),
        "--class-names": ("file with one class name a line", None, None, None, False, store),
        "--root-folder": ("prefix for relative image paths", "", None, None, False, store),
        "--new-height": ("resize to this height (0 keeps the size)", 0, int, None, False, store),
        "--new-width": ("resize to this width (0 keeps the size)", 0, int, None, False, store),
        "--gray": ("decode as greyscale (is_color false)", False, None, None, False, flag),
        "--label-format": ("dense N x C multi-hot (default) or indices N x K padded with -1 (needs --max-labels)",
                           "dense", None, ("dense", "indices"), False, store),
        "--max-labels": ("K, with --label-format indices", None, int, None, False, store),
        "--shuffle": ("write in a seeded random order", False, None, None, False, flag),
        "--seed": ("seed of --shuffle (default 0)", 0, int, None, False, store),
        "--encoded": ("LMDB: store encoded images, not raw pixels", False, None, None, False, flag),
        "--hdf5-dtype": ("HDF5 data type", "uint8", None, ("uint8", "float32"), False, store),
        "--max-file-mb": ("HDF5 files stay under this (default 950)", 950.0, float, None, False, store),
        "--threads": ("decode threads (default 2)", 2, int, None, False, store),
        "--batch-size": ("batch_size in the printed prototxt (default 32)", 32, int, None, False, store),
        "--skip-bad-images": ("leave out missing files and images that cannot be decoded (each reported once, "
                              "then counted) instead of stopping", False, None, None, False, flag),
        "--resume": ("continue an interrupted conversion into --out", False, None, None, False, flag),
        "--overwrite": ("replace a previous conversion in --out (never a folder holding other files)", False, None,
                        None, False, flag),
    }
    assert [a.option_strings for a in p._actions][1:3] == [[], ["--out"]]
    assert p.prog == "softmax-multilabel convert" and p.formatter_class is argparse.RawDescriptionHelpFormatter
    assert p.description == ("Decode the images of a multi-label list (as Caffe's ImageData: OpenCV, BGR) and write "
                             "HDF5 files for HDF5Data, or an image LMDB and a label LMDB for two Data layers.")
    assert p.epilog == C.CONVERT_EXAMPLES % {"prog": "softmax-multilabel convert"}
    assert p.epilog.startswith("examples:\n  softmax-multilabel convert train.txt --out train_h5 --format hdf5 ")
    assert [a.help for a in sub._choices_actions] == [
        "convert a multi-label image list to HDF5 or to image + label LMDBs"]
    with pytest.raises(SystemExit):         # --resume and --overwrite exclude each other
        p.parse_args(["l.txt", "--out", "o", "--format", "hdf5", "--resume", "--overwrite"])


def captured_convert(monkeypatch, summary=None):
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        if summary is None:
            raise MultilabelLossError("softmax-multilabel convert: stop here")
        return summary
    monkeypatch.setattr(C, "convert", fake)
    return calls


def test_command_line_options_reach_convert(monkeypatch):
    calls = captured_convert(monkeypatch)
    assert run_cli("convert", "l.txt", "--out", "o", "--format", "hdf5") == (
        2, "", "softmax-multilabel convert: error: stop here\n")
    assert calls[-1] == (("l.txt", "o", "hdf5"), dict(
        num_classes=None, class_names=None, root_folder="", new_height=0, new_width=0, is_color=True,
        label_format="dense", max_labels=None, shuffle=False, seed=0, encoded=False, hdf5_dtype="uint8",
        max_file_bytes=950 * 10 ** 6, threads=2, resume=False, overwrite=False, batch_size=32,
        skip_bad_images=False))
    run_cli("convert", "m.txt", "--out", "p", "--format", "lmdb", "--num-classes", "7", "--class-names", "n.txt",
            "--root-folder", "r/", "--new-height", "5", "--new-width", "9", "--gray", "--label-format", "indices",
            "--max-labels", "3", "--shuffle", "--seed", "11", "--encoded", "--hdf5-dtype", "float32",
            "--max-file-mb", "1.5", "--threads", "4", "--batch-size", "8", "--skip-bad-images", "--resume")
    assert calls[-1] == (("m.txt", "p", "lmdb"), dict(
        num_classes=7, class_names="n.txt", root_folder="r/", new_height=5, new_width=9, is_color=False,
        label_format="indices", max_labels=3, shuffle=True, seed=11, encoded=True, hdf5_dtype="float32",
        max_file_bytes=1500000, threads=4, resume=True, overwrite=False, batch_size=8, skip_bad_images=True))
    run_cli("convert", "m.txt", "--out", "p", "--format", "lmdb", "--overwrite")
    assert calls[-1][1]["overwrite"] is True and calls[-1][1]["resume"] is False


def test_run_prints_the_summary_and_the_layers(monkeypatch):
    summary = {"images": 5, "resumed_from": 3, "out": "o", "databases": ["/x/images_lmdb", "/x/labels_lmdb"],
               "counts": {"images_lmdb": 5, "labels_lmdb": 5}, "prototxt": "layer { }\n"}
    captured_convert(monkeypatch, summary)
    assert run_cli("convert", "l.txt", "--out", "o", "--format", "lmdb") == (0, (
        "converted 5 images (resumed at 3) into o (images_lmdb, labels_lmdb); verified counts: images_lmdb 5, "
        "labels_lmdb 5\n# layers for your train_val prototxt (TRAIN and TEST phases):\nlayer { }\n"), "")
    summary.update(resumed_from=0, files=["/y/part-00000.h5"], counts={"data": 2, "label": 2})
    assert run_cli("convert", "l.txt", "--out", "o", "--format", "hdf5")[1].startswith(
        "converted 5 images into o (part-00000.h5); verified counts: data 2, label 2\n# layers")


def test_run_turns_errors_into_one_line_and_an_exit_status(monkeypatch):
    def raising(error):
        def fake(*args, **kwargs):
            raise error
        monkeypatch.setattr(C, "convert", fake)
        return run_cli("convert", "l.txt", "--out", "o", "--format", "hdf5")
    assert raising(MultilabelLossError("no prefix here")) == (2, "", "softmax-multilabel convert: error: no prefix "
                                                                     "here\n")
    assert raising(MultilabelLossError("softmax-multilabel convertX: odd")) == (
        2, "", "softmax-multilabel convert: error: softmax-multilabel convertX: odd\n")
    assert raising(C.ConvertInterrupted("softmax-multilabel convert: interrupted")) == (
        130, "", "\nsoftmax-multilabel convert: interrupted\n")


class FakeClock(object):
    def __init__(self, monkeypatch, times):
        self.times = list(times)
        monkeypatch.setattr(C.time, "monotonic", lambda: self.times.pop(0))


def test_progress_lines_off_a_tty_one_per_tenth(monkeypatch):
    """Off a TTY: a line whenever the tenth changes and at the end; the rate counts from 1 ms before the first
    image (resumed runs: from the images done before), the time left from that rate."""
    FakeClock(monkeypatch, [10.0, 10.5, 11.0, 11.5, 12.999])
    stream = io.StringIO()
    progress = C.Progress(20, done=4, stream=stream)
    assert (progress.total, progress.done, progress.label, progress.stream, progress.tty) == (20, 4, "images",
                                                                                             stream, False)
    for n in (1, 1, 1, 4, 9):
        progress.update(n)
    assert stream.getvalue() == (
        "convert: 5/20 images ( 25%), 1000/s, 0 s left\n"      # 1 image in 1 ms
        "convert: 6/20 images ( 30%), 4/s, 3 s left\n"         # 2 in 0.501 s: 14 left at 3.99/s
        "convert: 11/20 images ( 55%), 5/s, 1 s left\n"        # 7 in 1.501 s: 4.66/s
        "convert: 20/20 images (100%), 5/s, 0 s left\n")       # the end
    assert progress.start_done == 4


def test_progress_on_a_tty_redraws_at_most_every_0_3_s(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    FakeClock(monkeypatch, [100.0, 100.25, 100.6, 100.7, 101.1])
    stream = Tty()
    progress = C.Progress(5, stream=stream)
    for _ in range(5):
        progress.update(1)
    assert stream.getvalue() == ("\rconvert: 1/5 images ( 20%), 1000/s, 0 s left"
                                 "\rconvert: 3/5 images ( 60%), 5/s, 0 s left"
                                 "\rconvert: 5/5 images (100%), 5/s, 0 s left\n")
    assert C.Progress(3, stream=Tty()).tty is True


def test_progress_says_what_it_cannot_know(monkeypatch):
    """No image yet done (an update of 0): no rate, so '?' left; a total of 0 divides by 1."""
    FakeClock(monkeypatch, [5.0, 5.0, 7.0])
    stream = io.StringIO()
    progress = C.Progress(4, stream=stream)
    progress.update(0)
    assert stream.getvalue() == "convert: 0/4 images (  0%), 0/s, ? left\n"
    stream = io.StringIO()
    C.Progress(0, stream=stream).update(0)
    assert stream.getvalue() == "convert: 0/0 images (  0%), 0/s, ? left\n"


def test_progress_stream_defaults_to_stderr_and_to_no_tty(monkeypatch):
    import sys
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert C.Progress(2).stream is sys.stderr

    class NoTty(object):
        def write(self, text):
            pass
    assert C.Progress(2, stream=NoTty()).tty is False   # type: ignore[arg-type]


def test_sigint_flag_in_the_main_thread_and_not_elsewhere(tmp_path):
    import signal
    import threading
    before = signal.getsignal(signal.SIGINT)
    with C._StopOnSigint() as stop:
        assert stop.requested is False and stop.previous is before
        assert signal.getsignal(signal.SIGINT) == stop._handler
        stop.check(3, 10, "w")                                 # nothing pressed: no error
        signal.raise_signal(signal.SIGINT)
        assert stop.requested is True
        assert signal.getsignal(signal.SIGINT) is before        # a second Ctrl-C: Python's own behaviour
        with pytest.raises(C.ConvertInterrupted) as info:
            stop.check(3, 10, "/w/.o.convert-partial")
    assert str(info.value) == ("softmax-multilabel convert: interrupted (Ctrl-C) after 3 of 10 images; nothing "
                               "was written to the output folder; the partial conversion is in "
                               "/w/.o.convert-partial: run the same command with --resume to continue it")
    assert isinstance(info.value, MultilabelLossError)
    assert signal.getsignal(signal.SIGINT) is before
    with C._StopOnSigint() as stop:
        pass
    assert signal.getsignal(signal.SIGINT) is before
    seen = []

    def in_thread():
        with C._StopOnSigint() as other:
            seen.append((other.previous, signal.getsignal(signal.SIGINT) is before))
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [(None, True)]

    def mine(signum, frame):
        pass
    with C._StopOnSigint() as stop:
        signal.signal(signal.SIGINT, mine)          # someone else's handler since: left in place
    assert signal.getsignal(signal.SIGINT) is mine
    signal.signal(signal.SIGINT, before)


def test_lmdb_prototxt_word_for_word():
    """The printed layers: TRAIN and TEST Data layers with distinct names, labels flattened, force_color or
    force_gray only for encoded images."""
    text = C.lmdb_prototxt(["/o/images_lmdb", "/o/labels_lmdb", "/o/label_weights_lmdb"], 7, True, False)
    layer = ('layer { name: "%s" type: "Data" top: "%s" include { phase: %s }%s\n  data_param { source: "%s" '
             'backend: LMDB batch_size: 7 } }\n')
    flatten = 'layer { name: "%s" type: "Flatten" bottom: "%s_4d" top: "%s" include { phase: %s } }\n'
    transform = "\n  transform_param {%s mirror: false }  # crop_size, mean_value, scale go here; never on labels"

    def phase(name, suffix, force):
        return (layer % ("data" + suffix, "data", name, transform % force, "/o/images_lmdb")
                + layer % ("label_lmdb" + suffix, "label_4d", name, "", "/o/labels_lmdb")
                + flatten % ("label" + suffix, "label", "label", name)
                + layer % ("label_weight_lmdb" + suffix, "label_weight_4d", name, "", "/o/label_weights_lmdb")
                + flatten % ("label_weight" + suffix, "label_weight", "label_weight", name))
    note = "# TEST phase: set source to the conversion of your test list\n"
    assert text == phase("TRAIN", "", " force_gray: true") + note + phase("TEST", "_test", " force_gray: true")
    assert C.lmdb_prototxt(["/o/images_lmdb", "/o/labels_lmdb", "/o/label_weights_lmdb"], 7, True) == (
        phase("TRAIN", "", " force_color: true") + note + phase("TEST", "_test", " force_color: true"))
    raw = C.lmdb_prototxt(["/o/images_lmdb", "/o/labels_lmdb"], 7, False, False)
    assert raw.count("transform_param { mirror: false }") == 2 and "force" not in raw
    assert raw.count("Flatten") == 2 and "label_weight" not in raw


def test_datums_hold_the_pixels_or_the_file(tmp_path):
    import cv2
    from caffe.proto import caffe_pb2
    img = pattern_image(1, (5, 7))
    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, img)
    options = C.ImageDataOptions(owner=C.OWNER, source="l.txt", num_classes=2)

    def datum(image, opts, encoded):
        return caffe_pb2.Datum.FromString(C._image_datum(caffe_pb2, cv2, image, path, opts, encoded))
    raw = datum(img, options, False)
    assert (raw.channels, raw.height, raw.width, raw.encoded) == (3, 5, 7, False)
    assert raw.data == img.transpose(2, 0, 1).tobytes()
    assert datum(img, options, True).data == Path(path).read_bytes() and datum(img, options, True).encoded
    gray = img[:, :, :1]
    for image, opts in ((gray, C.ImageDataOptions(owner=C.OWNER, source="l.txt", num_classes=2, is_color=False)),
                        (img, C.ImageDataOptions(owner=C.OWNER, source="l.txt", num_classes=2, new_height=5,
                                                 new_width=7))):
        d = datum(image, opts, True)
        assert d.encoded and (d.channels, d.height, d.width) == image.shape[2:] + image.shape[:2]
        decoded = cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)
    labels = caffe_pb2.Datum.FromString(C._float_datum(caffe_pb2, np.array([0.5, -1, 2], np.float32)))
    assert (labels.channels, labels.height, labels.width, list(labels.float_data)) == (3, 1, 1, [0.5, -1, 2])
    assert not labels.data and not labels.encoded


def test_manifest_is_written_whole_and_readable(tmp_path):
    C._save_manifest(str(tmp_path), {"written": 2, "parts": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert.json"]
    assert (tmp_path / "convert.json").read_text() == '{\n "written": 2,\n "parts": []\n}'


def test_work_folder_is_a_hidden_sibling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert C.work_folder("out") == str(tmp_path / ".out.convert-partial")
    assert C.work_folder("/a/b/out/") == "/a/b/.out.convert-partial"


def small_list(tmp_path, n=3, size=(5, 7)):
    paths = write_images(tmp_path / "img", [pattern_image(i, size) for i in range(n)], ".png")
    labels = [[i % 3] for i in range(n)]
    return write_list(tmp_path / "list.txt", paths, labels), paths, labels


def test_argument_checks_name_convert(tmp_path):
    source = small_list(tmp_path)[0]
    out = str(tmp_path / "o")
    assert _error(C.convert, source, out, "tfrecord", num_classes=3) == (
        "softmax-multilabel convert: --format must be one of hdf5, lmdb, got 'tfrecord'")
    assert _error(C.convert, source, out, "hdf5", num_classes=3, hdf5_dtype="float64") == (
        "softmax-multilabel convert: hdf5_dtype must be uint8 or float32, got 'float64'")
    assert _error(C.convert, source, out, "hdf5", num_classes=3, encoded=True) == (
        "softmax-multilabel convert: --encoded is for --format lmdb only")
    assert _error(C.convert, source, out, "hdf5", num_classes=3, resume=True, overwrite=True) == (
        "softmax-multilabel convert: --resume and --overwrite exclude each other")
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.convert-partial").exists()


def test_manifest_settings_and_summary_exactly(tmp_path):
    import hashlib
    source, paths, _ = small_list(tmp_path)
    out = tmp_path / "o"
    stream = io.StringIO()
    summary = C.convert(source, str(out), "hdf5", num_classes=3, threads=1, stream=stream)
    manifest = json.loads((out / "convert.json").read_text())
    assert manifest == {
        "settings": {"format": "hdf5", "source": source, "source_sha256": hashlib.sha256(
            Path(source).read_bytes()).hexdigest(), "root_folder": "", "num_classes": 3, "class_names": None,
            "new_height": 0, "new_width": 0, "is_color": True, "label_format": "dense", "max_labels": None,
            "shuffle": False, "seed": 0, "encoded": False, "hdf5_dtype": "uint8", "max_file_bytes": 950 * 10 ** 6,
            "images": 3, "skip_bad_images": False},
        "written": 3, "parts": [{"file": "part-00000.h5", "rows": 3, "first": 0}], "complete": True,
        "skipped": [], "image_shape": [3, 5, 7]}
    list_txt = str(out / "list.txt")
    assert summary == {"files": [str(out / "part-00000.h5")], "list": list_txt, "counts": {"data": 3, "label": 3},
                       "prototxt": summary["prototxt"], "images": 3, "out": str(out), "format": "hdf5",
                       "resumed_from": 0, "skipped": 0}
    assert summary["prototxt"] == (
        'layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }\n'
        '  hdf5_data_param { source: "%s" batch_size: 32 } }\n'
        '# TEST phase: set source to the conversion of your test list\n'
        'layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }\n'
        '  hdf5_data_param { source: "%s" batch_size: 32 } }\n' % (list_txt, list_txt))
    assert Path(list_txt).read_text() == str(out / "part-00000.h5") + "\n"
    lines = stream.getvalue().splitlines()
    assert [line.split(", ")[0] for line in lines] == ["convert: 1/3 images ( 33%)", "convert: 2/3 images ( 67%)",
                                                       "convert: 3/3 images (100%)"]
    assert lines[-1].endswith("/s, 0 s left")
    with h5py.File(out / "part-00000.h5", "r") as f:
        assert set(f) == {"data", "label"} and f["data"].dtype == np.uint8
        assert f["data"].maxshape == (3, 3, 5, 7) and f["label"].maxshape == (3, 3)    # without skip: fixed
        np.testing.assert_array_equal(f["label"][...], np.eye(3, dtype=np.float32))
        np.testing.assert_array_equal(f["data"][0], load_image(paths[0], True, 0, 0).transpose(2, 0, 1))


def test_changed_list_is_not_resumed(tmp_path, monkeypatch):
    source, paths, _ = small_list(tmp_path, n=5)
    monkeypatch.setattr(C, "CHUNK", 2)
    Path(paths[3]).write_bytes(b"broken")
    out = str(tmp_path / "o")
    with pytest.raises(MultilabelLossError):
        C.convert(source, out, "lmdb", num_classes=3, threads=1, stream=io.StringIO())
    with open(source, "a") as f:
        f.write("# a comment\n")
    message = _error(C.convert, source, out, "lmdb", num_classes=3, threads=1, resume=True, stream=io.StringIO())
    assert re.fullmatch(r"softmax-multilabel convert: cannot resume .*\.o\.convert-partial: source_sha256 changed "
                        r"since the interrupted run \(source_sha256 was '[0-9a-f]{64}', now '[0-9a-f]{64}'\); use "
                        r"--overwrite to start again", message), message
    message = _error(C.convert, source, out, "lmdb", num_classes=3, threads=1, resume=True, seed=4, shuffle=True,
                     stream=io.StringIO())
    assert "seed, shuffle, source_sha256 changed" in message and "seed was 0, now 4; shuffle was False, now True" \
        in message


def test_decoding_uses_the_threads_asked_for(tmp_path, monkeypatch):
    import concurrent.futures
    import threading
    source, paths, labels = small_list(tmp_path, n=9)
    seen = set()
    real = C.load_image

    def load(*args, **kwargs):
        seen.add(threading.get_ident())
        return real(*args, **kwargs)
    monkeypatch.setattr(C, "load_image", load)
    C.convert(source, str(tmp_path / "o"), "lmdb", num_classes=3, threads=1, stream=io.StringIO())
    assert len(seen) == 1 and threading.get_ident() not in seen
    pools = []
    real_pool = concurrent.futures.ThreadPoolExecutor

    def pool(max_workers):
        pools.append(max_workers)
        return real_pool(max_workers)
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", pool)
    C.convert(source, str(tmp_path / "p"), "hdf5", num_classes=3, stream=io.StringIO())      # the default: 2
    C.convert(source, str(tmp_path / "q"), "lmdb", num_classes=3, threads=3, stream=io.StringIO())
    assert pools == [2, 3]


def test_resume_fresh_and_partial_folder_rules(tmp_path):
    source, paths, _ = small_list(tmp_path)
    images = C.parse_image_list(source, 3)
    out = tmp_path / "o"
    work = tmp_path / ".o.convert-partial"
    settings = {"format": "hdf5"}
    # --resume with nothing to resume: a fresh start; an empty work folder left behind is fine
    work.mkdir()
    manifest = C._prepare_output(str(out), settings, True, False, images)
    assert manifest == {"settings": settings, "written": 0, "parts": [], "complete": False}
    assert json.loads((work / "convert.json").read_text()) == manifest
    # a complete conversion and no partial one: --resume refused
    work.rename(out)
    assert _error(C._prepare_output, str(out), settings, True, False, images) == (
        "softmax-multilabel convert: cannot resume: %s is a complete conversion and there is no interrupted one "
        "(%s); pass --overwrite to convert again" % (out, work))
    # a partial one next to a complete one: resumed, the manifest as it was
    work.mkdir()
    C._save_manifest(str(work), {"settings": settings, "written": 5, "parts": [1]})
    assert C._prepare_output(str(out), settings, True, False, images)["written"] == 5
    # --overwrite deletes the partial one (convert's own) and starts again
    (work / "part-00000.h5").write_text("")
    assert C._prepare_output(str(out), settings, False, True, images)["written"] == 0
    assert sorted(p.name for p in work.iterdir()) == ["convert.json"]
    # a partial folder that is not convert's is never deleted
    (work / "notes.txt").write_text("mine")
    assert "work folder %s holds files convert did not write (notes.txt)" % work in _error(
        C._prepare_output, str(out), settings, False, True, images)
    assert (work / "notes.txt").exists()


def test_publish_replaces_only_convert_output(tmp_path):
    source, paths, _ = small_list(tmp_path)
    images = C.parse_image_list(source, 3)
    out, work, old = tmp_path / "o", tmp_path / ".o.convert-partial", tmp_path / ".o.convert-old"

    def new_work(tag):
        work.mkdir()
        C._save_manifest(str(work), {"tag": tag})
    new_work(1)
    out.mkdir()                                     # an empty folder: replaced
    C._publish(str(work), str(out), images)
    assert json.loads((out / "convert.json").read_text()) == {"tag": 1} and not work.exists()
    new_work(2)
    old.mkdir()                                     # an old folder left by a crash, convert's own: deleted
    C._save_manifest(str(old), {"tag": 0})
    C._publish(str(work), str(out), images)
    assert json.loads((out / "convert.json").read_text()) == {"tag": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "list.txt", "o"]
    new_work(3)
    old.mkdir()
    (old / "mine.txt").write_text("x")              # not convert's: refused, nothing moved
    assert "old output folder %s is not empty and was not made by convert" % old in _error(
        C._publish, str(work), str(out), images)
    assert json.loads((out / "convert.json").read_text()) == {"tag": 2} and (old / "mine.txt").exists()
    (out / "x.txt").write_text("x")                 # a file of the user's in the output: refused
    assert "output folder %s holds files convert did not write (x.txt)" % out in _error(
        C._publish, str(work), str(out), images)
    (out / "x.txt").unlink()
    old.joinpath("mine.txt").unlink()
    old.rmdir()
    C._publish(str(work), str(out), images)
    assert json.loads((out / "convert.json").read_text()) == {"tag": 3}


def test_nonempty_and_foreign_entries(tmp_path):
    assert not C._nonempty(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    assert not C._nonempty(str(tmp_path / "empty"))
    (tmp_path / "f").write_text("")
    assert C._nonempty(str(tmp_path / "f"))
    (tmp_path / "link").symlink_to(tmp_path / "none")            # a dangling link is something
    assert C._nonempty(str(tmp_path / "link"))
    assert C._nonempty(str(tmp_path))
    folder = tmp_path / "own"
    folder.mkdir()
    for name in ("convert.json", "convert.json.tmp", "list.txt", "part-00012.h5", "images_lmdb", "labels_lmdb",
                 "label_weights_lmdb", "part-0001.h5", "xlist.txt", "list.txt~", "convert.jsonx", "data_lmdb"):
        (folder / name).write_text("")
    assert C._foreign_entries(str(folder)) == ["convert.jsonx", "data_lmdb", "list.txt~", "part-0001.h5",
                                               "xlist.txt"]


def test_verification_catches_a_writer_that_lost_records(tmp_path, monkeypatch):
    """The counts checked after writing: a record or an HDF5 row that went missing is an error, not a run that
    ends well."""
    source, paths, _ = small_list(tmp_path, n=4)
    real_put = C._put_records

    def put_all_but_2(txns, caffe_pb2, cv2, options, images, pos, i, img, encoded):
        if pos != 2:
            real_put(txns, caffe_pb2, cv2, options, images, pos, i, img, encoded)
    monkeypatch.setattr(C, "_put_records", put_all_but_2)
    message = _error(C.convert, source, str(tmp_path / "a"), "lmdb", num_classes=3, stream=io.StringIO())
    ends = (C.lmdb_key(0, paths[0]), C.lmdb_key(3, paths[3]))
    assert message == ("softmax-multilabel convert: the LMDBs hold {'images_lmdb': 3, 'labels_lmdb': 3} records "
                       "(first/last keys %r) but the list has 4 images" % [ends, ends])

    def put_label_under_other_key(txns, caffe_pb2, cv2, options, images, pos, i, img, encoded):
        real_put(txns, caffe_pb2, cv2, options, images, pos, i, img, encoded)
        if pos == 3:
            txns[1].delete(C.lmdb_key(pos, images.paths[i]))
            txns[1].put(b"99999999_x", b"")
    monkeypatch.setattr(C, "_put_records", put_label_under_other_key)
    assert "but the list has 4 images" in _error(C.convert, source, str(tmp_path / "b"), "lmdb", num_classes=3,
                                                 stream=io.StringIO())
    monkeypatch.setattr(C, "_put_records", real_put)
    real_close = C._close_part

    def close_short(handle, datasets, rows, num_classes, label_format):
        datasets[1].resize(rows - 1, axis=0)
        real_close(handle, datasets[:1], rows, num_classes, label_format)
    monkeypatch.setattr(C, "_close_part", close_short)
    assert _error(C.convert, source, str(tmp_path / "c"), "hdf5", num_classes=3, skip_bad_images=True,
                  stream=io.StringIO()) == ("softmax-multilabel convert: part-00000.h5 holds {'data': 4, 'label': 3} "
                                            "rows, expected 4")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_hdf5_one_row_a_file_when_a_row_is_larger_than_the_limit(tmp_path):
    source, paths, labels = small_list(tmp_path, n=3)
    summary = C.convert(source, str(tmp_path / "o"), "hdf5", num_classes=3, max_file_bytes=1, stream=io.StringIO())
    assert [Path(f).name for f in summary["files"]] == ["part-00000.h5", "part-00001.h5", "part-00002.h5"]
    for k, name in enumerate(summary["files"]):
        with h5py.File(name, "r") as f:
            assert f["data"].shape == (1, 3, 5, 7) and f["label"][...].tolist() == [[float(c == k % 3)
                                                                                    for c in range(3)]]
    manifest = json.loads((tmp_path / "o" / "convert.json").read_text())
    assert manifest["parts"] == [{"file": "part-%05d.h5" % k, "rows": 1, "first": k} for k in range(3)]
    # the row size counts data and labels (and weights): 105 + 12 bytes a row, so 234 bytes hold 2 rows
    summary = C.convert(source, str(tmp_path / "p"), "hdf5", num_classes=3, max_file_bytes=2 * 117,
                        stream=io.StringIO())
    assert len(summary["files"]) == 2
    summary = C.convert(source, str(tmp_path / "q"), "hdf5", num_classes=3, max_file_bytes=2 * 117 - 1,
                        stream=io.StringIO())
    assert len(summary["files"]) == 3
    summary = C.convert(source, str(tmp_path / "r"), "hdf5", num_classes=3, max_file_bytes=2 * 4 * 105 + 2 * 24,
                        hdf5_dtype="float32", stream=io.StringIO())
    assert len(summary["files"]) == 2
    (tmp_path / "w.txt").write_text("%s 0:2\n%s 1\n%s\n" % tuple(paths))
    summary = C.convert(str(tmp_path / "w.txt"), str(tmp_path / "s"), "hdf5", num_classes=3,
                        label_format="indices", max_labels=1, max_file_bytes=2 * (105 + 8), stream=io.StringIO())
    assert len(summary["files"]) == 2 and "label_weight" in summary["prototxt"]
    assert len(C.convert(str(tmp_path / "w.txt"), str(tmp_path / "t"), "hdf5", num_classes=3, label_format="indices",
                         max_labels=1, max_file_bytes=2 * (105 + 8) - 1, stream=io.StringIO())["files"]) == 3
    with h5py.File(summary["files"][0], "r") as f:
        assert dict(f.attrs) == {"num_classes": 3, "label_format": "indices"}
        assert f["label"][...].tolist() == [[0], [1]] and f["label_weight"][...].tolist() == [[2], [1]]


class SigintAt(io.StringIO):
    """A progress stream that presses Ctrl-C (a real SIGINT to this process) when a line starts with ``at``."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def write(self, text):
        if text.startswith(self.at):
            import signal
            signal.raise_signal(signal.SIGINT)
        return super().write(text)


@pytest.mark.parametrize("fmt", ["hdf5", "lmdb"])
@pytest.mark.parametrize("at,done", [("convert: 3/10", 3), ("convert: 10/10", 10)])
def test_sigint_in_process_stops_after_the_image_in_hand(tmp_path, monkeypatch, fmt, at, done):
    """SIGINT while converting (in this process, after the progress line of image 3, or of the last image): the
    run stops before the next image, names how many were done, publishes nothing, restores the handler, and
    --resume completes it."""
    import signal
    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(C, "CHUNK", 2)
    source, paths, labels = small_list(tmp_path, n=10)
    out = tmp_path / "o"
    message = _error(C.convert, source, str(out), fmt, num_classes=3, threads=1, max_file_bytes=2 * 117,
                     stream=SigintAt(at))
    assert message == ("softmax-multilabel convert: interrupted (Ctrl-C) after %d of 10 images; nothing was written "
                       "to the output folder; the partial conversion is in %s: run the same command with --resume "
                       "to continue it" % (done, tmp_path / ".o.convert-partial"))
    assert not out.exists() and signal.getsignal(signal.SIGINT) is before
    manifest = json.loads((tmp_path / ".o.convert-partial" / "convert.json").read_text())
    assert manifest["written"] == (2 if done == 3 else 10) and not manifest["complete"]
    stream = io.StringIO()
    summary = C.convert(source, str(out), fmt, num_classes=3, threads=1, max_file_bytes=2 * 117, resume=True,
                        stream=stream)
    assert summary["resumed_from"] == manifest["written"] and summary["images"] == 10
    if done < 10:
        assert stream.getvalue().splitlines()[0].startswith("convert: 3/10 images")
    else:                                           # nothing left to read: no progress line
        assert stream.getvalue() == ""


def test_skipped_positions_are_recorded_and_redone_on_resume(tmp_path, monkeypatch):
    """--skip-bad-images: the manifest keeps the written positions left out; an interrupted run forgets those
    at or after the resume point (they are read again)."""
    monkeypatch.setattr(C, "CHUNK", 2)
    source, paths, labels = small_list(tmp_path, n=6)
    for k in (1, 4):
        Path(paths[k]).write_bytes(b"broken")
    out = tmp_path / "o"
    message = _error(C.convert, source, str(out), "lmdb", num_classes=3, threads=1, skip_bad_images=True,
                     stream=SigintAt("convert: 5/6"))
    assert "after 5 of 6 images" in message
    manifest = json.loads((tmp_path / ".o.convert-partial" / "convert.json").read_text())
    assert manifest["written"] == 4 and manifest["skipped"] == [1]
    manifest["skipped"] = [1, 4]                    # as if image 4 had been reported before the commit
    C._save_manifest(str(tmp_path / ".o.convert-partial"), manifest)
    stream = io.StringIO()
    summary = C.convert(source, str(out), "lmdb", num_classes=3, threads=1, skip_bad_images=True, resume=True,
                        stream=stream)
    assert json.loads((out / "convert.json").read_text())["skipped"] == [1, 4]
    assert summary["images"] == 4 and summary["skipped"] == 2 and summary["counts"] == {"images_lmdb": 4,
                                                                                         "labels_lmdb": 4}
    assert stream.getvalue().splitlines()[-1] == ("softmax-multilabel convert: skip_bad_images: left out 2 bad "
                                                  "image(s) of the 6 listed (missing: 0, cannot be decoded: 2)")


def test_resumed_hdf5_checks_sizes_against_the_images_written_before(tmp_path, monkeypatch):
    """The first image's size is kept in the manifest: after a resume, an image of another size is still an
    error (not a new first image)."""
    monkeypatch.setattr(C, "CHUNK", 2)
    paths = write_images(tmp_path / "img", [pattern_image(i, (5, 7) if i < 2 else (6, 7)) for i in range(3)])
    source = write_list(tmp_path / "list.txt", paths, [[0], [1], [2]])
    kw: dict[str, Any] = dict(num_classes=3, threads=1, max_file_bytes=2 * 117)
    assert "after 2 of 3 images" in _error(C.convert, source, str(tmp_path / "o"), "hdf5", stream=SigintAt(
        "convert: 2/3"), **kw)
    assert _error(C.convert, source, str(tmp_path / "o"), "hdf5", resume=True, stream=io.StringIO(), **kw) == (
        "softmax-multilabel convert: image %r (%s:3) is 6x7x3 but the first image is 5x7x3; an HDF5 dataset needs "
        "one size: pass --new-height and --new-width" % (paths[2], source))


def test_hdf5_verification_catches_a_part_missing_from_the_manifest(tmp_path, monkeypatch):
    """A partial folder whose manifest lost a finished part (resumed): the files hold fewer images than the
    list, an error, not a conversion that silently lacks them."""
    monkeypatch.setattr(C, "CHUNK", 2)
    source, paths, labels = small_list(tmp_path, n=6)
    kw: dict[str, Any] = dict(num_classes=3, threads=1, max_file_bytes=2 * 117)
    _error(C.convert, source, str(tmp_path / "o"), "hdf5", stream=SigintAt("convert: 5/6"), **kw)
    work = tmp_path / ".o.convert-partial"
    manifest = json.loads((work / "convert.json").read_text())
    assert manifest["written"] == 4 and len(manifest["parts"]) == 2
    manifest["parts"] = manifest["parts"][:1]
    C._save_manifest(str(work), manifest)
    assert _error(C.convert, source, str(tmp_path / "o"), "hdf5", resume=True, stream=io.StringIO(), **kw) == (
        "softmax-multilabel convert: the HDF5 files hold 4 images but the list has 6 (0 left out)")
    assert not (tmp_path / "o").exists()


def test_labels_for_are_float32_rows_in_the_order_asked(tmp_path):
    source = tmp_path / "l.txt"
    source.write_text("a.png 2:0.25 0\nb.png\nc.png 1\n")
    images = C.parse_image_list(str(source), 3)
    dense = C.ImageDataOptions(owner=C.OWNER, source=str(source), num_classes=3)
    labels, weights = C._labels_for(dense, images, [2, 0])
    assert labels.dtype == np.float32 and weights is None
    np.testing.assert_array_equal(labels, np.array([[0, 1, 0], [1, 0, 0.25]]))
    indices = C.ImageDataOptions(owner=C.OWNER, source=str(source), num_classes=3, label_format="indices",
                                 max_labels=2)
    labels, weights = C._labels_for(indices, images, [0, 1])
    assert labels.dtype == np.float32 and weights is not None and weights.dtype == np.float32
    np.testing.assert_array_equal(labels, [[2, 0], [-1, -1]])
    np.testing.assert_array_equal(weights, np.array([[0.25, 1], [0, 0]]))


def test_lmdb_map_is_sparse_and_large(tmp_path):
    """The LMDBs are opened with a 1 TiB map (sparse on disk), not lmdb's 10 MiB default that a real data set
    overflows."""
    import lmdb
    source = small_list(tmp_path)[0]
    summary = C.convert(source, str(tmp_path / "o"), "lmdb", num_classes=3, stream=io.StringIO())
    assert summary["databases"] == [str(tmp_path / "o" / "images_lmdb"), str(tmp_path / "o" / "labels_lmdb")]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["convert.json", "images_lmdb", "labels_lmdb"]
    for name in ("images_lmdb", "labels_lmdb"):
        env = lmdb.open(str(tmp_path / "o" / name), readonly=True, lock=False, map_size=0)   # 0: the stored size
        assert env.info()["map_size"] == 1 << 40
        env.close()
        assert (tmp_path / "o" / name / "data.mdb").stat().st_blocks * 512 < 1 << 20


def test_progress_below_one_image_a_second_still_says_the_time_left(monkeypatch):
    FakeClock(monkeypatch, [5.0, 10.0])
    stream = io.StringIO()
    progress = C.Progress(4, stream=stream)
    progress.update(1)
    progress.update(1)                  # 2 images in 5.001 s: 0.4/s, 2 left: 5 s
    assert stream.getvalue().splitlines()[1] == "convert: 2/4 images ( 50%), 0/s, 5 s left"


@pytest.mark.parametrize("kwargs,message", [
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(threads=0), "threads must be an integer >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (dict(new_height=-2, new_width=3), "new_height must be an integer >= 0, got -2"),
    (dict(new_height=3, new_width=-2), "new_width must be an integer >= 0, got -2"),
    (dict(label_format="indices"), '"label_format": "indices" needs max_labels (K, the label slots of each sample; '
                                   'shorter label lists are padded with -1)'),
    (dict(max_labels=2), 'max_labels is only used with "label_format": "indices", got max_labels 2 with "dense"'),
    (dict(num_classes=0), "num_classes must be an integer >= 1, got 0"),
], ids=["seed", "threads", "batch_size", "new_height", "new_width", "indices", "max_labels", "num_classes"])
def test_options_are_checked_before_the_list_is_read(tmp_path, kwargs, message):
    """Every option goes through the layer's own checks (params.ImageDataOptions), named for convert, before
    the list is read or anything is written."""
    kw: dict[str, Any] = dict(num_classes=3, stream=io.StringIO())
    kw.update(kwargs)
    assert _error(C.convert, str(tmp_path / "missing.txt"), str(tmp_path / "o"), "hdf5", **kw) == (
        "softmax-multilabel convert: " + message)
    assert sorted(tmp_path.iterdir()) == []


def test_class_names_give_the_classes(tmp_path):
    """--class-names: labels are names, C is the number of names; the manifest keeps the file."""
    paths = write_images(tmp_path / "img", [pattern_image(i, (5, 7)) for i in range(3)])
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\nfish\n")
    source = tmp_path / "list.txt"
    source.write_text("%s dog fish\n%s\n%s cat\n" % tuple(paths))
    out = tmp_path / "o"
    summary = C.convert(str(source), str(out), "hdf5", class_names=str(names), stream=io.StringIO())
    with h5py.File(summary["files"][0], "r") as f:
        np.testing.assert_array_equal(f["label"][...], np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]]))
        assert f.attrs["num_classes"] == 4
    settings = json.loads((out / "convert.json").read_text())["settings"]
    assert settings["class_names"] == str(names) and settings["num_classes"] == 4


def test_missing_files_under_a_root_folder_are_named_with_it(tmp_path):
    source, paths, _ = small_list(tmp_path)
    root = str(tmp_path) + "/"
    (tmp_path / "rel.txt").write_text("img/img_000.png 0\nimg/gone.png 1\n")
    message = _error(C.convert, str(tmp_path / "rel.txt"), str(tmp_path / "o"), "hdf5", num_classes=3,
                     root_folder=root, stream=io.StringIO())
    assert message.startswith("softmax-multilabel convert: 1 of 2 image files listed in %r do not exist (root_folder "
                              "%r): line 2: %r" % (str(tmp_path / "rel.txt"), root, root + "img/gone.png"))
    summary = C.convert(str(tmp_path / "rel.txt"), str(tmp_path / "o"), "hdf5", num_classes=3, root_folder=root,
                        skip_bad_images=True, stream=io.StringIO())
    assert summary["images"] == 1 and summary["skipped"] == 1


def test_resume_refuses_a_partial_run_whose_settings_lack_one(tmp_path):
    """A partial folder written with other settings keys (an older convert): a key on either side only counts
    as changed."""
    source, paths, _ = small_list(tmp_path)
    images = C.parse_image_list(source, 3)
    work = tmp_path / ".o.convert-partial"
    work.mkdir()
    C._save_manifest(str(work), {"settings": {"format": "hdf5", "old_key": 1}, "written": 1, "parts": []})
    assert _error(C._prepare_output, str(tmp_path / "o"), {"format": "hdf5", "seed": 0}, True, False, images) == (
        "softmax-multilabel convert: cannot resume %s: old_key, seed changed since the interrupted run (old_key was "
        "1, now None; seed was None, now 0); use --overwrite to start again" % work)


def test_progress_first_update_on_a_tty_always_draws(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    FakeClock(monkeypatch, [0.5])
    stream = Tty()
    C.Progress(10, stream=stream).update(1)
    assert stream.getvalue() == "\rconvert: 1/10 images ( 10%), 1000/s, 0 s left"


@pytest.mark.parametrize("label_format", ["dense", "indices"])
def test_hdf5_last_part_shrinks_to_the_images_kept(tmp_path, label_format):
    """--skip-bad-images and a bad last image: the part was made for 3 rows and holds 2; every dataset is cut
    to 2 rows along the first axis (data, labels and label weights alike) and the skipped position recorded."""
    source, paths, labels = small_list(tmp_path, n=3)
    Path(paths[2]).write_bytes(b"broken")
    extra: dict[str, Any] = dict(label_format="indices", max_labels=1) if label_format == "indices" else {}
    stream = io.StringIO()
    summary = C.convert(source, str(tmp_path / "o"), "hdf5", num_classes=3, skip_bad_images=True, threads=1,
                        stream=stream, **extra)
    assert summary["images"] == 2 and summary["skipped"] == 1 and summary["counts"] == {"data": 2, "label": 2}
    manifest = json.loads((tmp_path / "o" / "convert.json").read_text())
    assert manifest["skipped"] == [2] and manifest["parts"] == [{"file": "part-00000.h5", "rows": 2, "first": 0}]
    with h5py.File(summary["files"][0], "r") as f:
        names = ["data", "label"] + (["label_weight"] if label_format == "indices" else [])
        assert sorted(f) == sorted(names)
        assert f["data"].shape == (2, 3, 5, 7) and f["data"].maxshape == (None, 3, 5, 7)
        for name in names[1:]:
            assert f[name].shape == (2, 1 if label_format == "indices" else 3) and f[name].maxshape[0] is None
        for row in range(2):
            np.testing.assert_array_equal(f["data"][row], load_image(paths[row], True, 0, 0).transpose(2, 0, 1))
        if label_format == "indices":
            assert f["label"][...].tolist() == [[0], [1]] and f["label_weight"][...].tolist() == [[1], [1]]
        else:
            assert f["label"][...].tolist() == [[1, 0, 0], [0, 1, 0]]


def test_progress_off_a_tty_prints_each_new_tenth_exactly(monkeypatch):
    """20 images one at a time: a line at the first image, then whenever 10 * done // 20 grows (2, 4, ...)."""
    FakeClock(monkeypatch, [float(t) for t in range(1, 13)])
    stream = io.StringIO()
    progress = C.Progress(20, stream=stream)
    for _ in range(12):
        progress.update(1)
    assert [int(line.split()[1].split("/")[0]) for line in stream.getvalue().splitlines()] == [1, 2, 4, 6, 8, 10, 12]


def test_progress_of_one_image_and_the_last_line_on_a_tty(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    FakeClock(monkeypatch, [50.0, 50.1, 60.0])
    stream = Tty()
    progress = C.Progress(2, stream=stream)
    progress.update(1)
    progress.update(1)              # 0.1 s after the last draw, but the last image: drawn, and the line ended
    assert stream.getvalue() == ("\rconvert: 1/2 images ( 50%), 1000/s, 0 s left"
                                 "\rconvert: 2/2 images (100%), 20/s, 0 s left\n")
    one = io.StringIO()
    C.Progress(1, stream=one).update(1)
    assert one.getvalue() == "convert: 1/1 images (100%), 1000/s, 0 s left\n"


def test_progress_redraws_only_after_more_than_0_3_s(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    first, second = 0.30000010000000005, 0.6000001              # second - first == 0.3 exactly
    assert second - first == 0.3
    FakeClock(monkeypatch, [first, second])
    stream = Tty()
    progress = C.Progress(5, stream=stream)
    progress.update(1)
    progress.update(1)
    assert stream.getvalue().count("\r") == 1


def test_manifest_is_written_under_a_temporary_name_in_its_folder(tmp_path, monkeypatch):
    """convert.json is written as convert.json.tmp in the same folder, then renamed over (atomic: a crash never
    leaves half a manifest), wherever the working directory is."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    renames = []
    real = C.os.replace

    def spy(src, dst):
        renames.append((src, dst, Path(src).read_text()))
        return real(src, dst)
    monkeypatch.setattr(C.os, "replace", spy)
    C._save_manifest(str(tmp_path), {"a": 1})
    assert renames == [(str(tmp_path / "convert.json.tmp"), str(tmp_path / "convert.json"), '{\n "a": 1\n}')]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convert.json", "cwd"] and not any(elsewhere.iterdir())


def test_indices_with_more_labels_than_max_labels_are_refused(tmp_path):
    source, paths, _ = small_list(tmp_path, n=2)
    (tmp_path / "k.txt").write_text("%s 0 1\n%s 2\n" % tuple(paths))
    assert _error(C.convert, str(tmp_path / "k.txt"), str(tmp_path / "o"), "lmdb", num_classes=3,
                  label_format="indices", max_labels=1, stream=io.StringIO()) == (
        "softmax-multilabel convert: %s:1: 2 labels but max_labels is 1" % (tmp_path / "k.txt"))
