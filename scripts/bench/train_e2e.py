"""Anchor ``train`` of ``make bench``: end to end, ms per ``caffe train`` iteration of the image example's net.

The net of ``prototxt/multilabel_images/train_val.prototxt`` (its TRAIN phase: conv 5x5/20, pool, conv 3x3/40,
pool, fc 128, fc 10, batch 64 of 28x28 greyscale crops of 32x32 JPEGs, Adam as in its solver), trained by the
real ``caffe train`` two ways on the same JPEGs:

* ``ours``: the example as written, our ``MultilabelImageDataLayer`` (JPEG lists, random crops, 2 decode
  threads) and ``SoftmaxMultilabelLossLayer``;
* ``caffe``: the all-C++ multi-label recipe of ``prototxt/image_lmdb_hdf5/``, the user's real alternative:
  a ``Data`` layer over an LMDB written by Caffe's ``convert_imageset --gray`` (random crops), the multi-hot
  labels from ``HDF5Data``, and Caffe's ``SigmoidCrossEntropyLoss``.

What it measures: the wall-clock ms per iteration (forward + backward + update, with the data layer's work
that is not hidden by prefetching) from the glog timestamps of ``caffe train``'s loss lines, after a warm-up,
alternating the two for ``--e2e-runs`` runs; the best run of each is kept, all runs are reported, with the
load average (as ``uptime`` prints it) before and after. The goal is ours <= 1.0x Caffe's. Building the LMDB
(``convert_imageset``) is a one-off cost of the C++ recipe and is reported apart, not in the iteration time.
Writes ``train_e2e.md`` and ``train_e2e.json``.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any

import h5py
import numpy as np

from bench.harness import ROOT, caffe_train_ms, command_line, cpu_model, load_average, write_jpegs

NAME = "train"
OUTPUT = "train_e2e"

EXAMPLE_NET = os.path.join(ROOT, "prototxt", "multilabel_images", "train_val.prototxt")
IMAGE_SIZE, NUM_CLASSES = 32, 10
# prototxt/multilabel_images/solver.prototxt's optimizer (the iteration count is the benchmark's).
SOLVER = {"type": '"Adam"', "base_lr": "0.001", "momentum": "0.9", "momentum2": "0.999", "weight_decay": "0.0005",
          "lr_policy": '"fixed"'}


def example_layers() -> tuple[Any, list[Any]]:
    """The example net's TRAIN-phase Python data layer and the layers after it (the loss layer last)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = caffe_pb2.NetParameter()
    with open(EXAMPLE_NET) as f:
        text_format.Merge(f.read(), net)
    data = [layer for layer in net.layer if layer.type == "Python" and "data" in layer.top
            and any(rule.phase == caffe_pb2.TRAIN for rule in layer.include)]
    rest = [layer for layer in net.layer if "data" not in layer.top or layer.type != "Python"]
    if len(data) != 1 or not rest or rest[-1].name != "loss":
        raise SystemExit("benchmark: %s is not the image example's net (one TRAIN data layer, a loss last)"
                         % EXAMPLE_NET)
    return data[0], rest


def nets(folder: str, ours_list: str, lmdb_path: str, h5_list: str, threads: int) -> dict[str, str]:
    """The two TRAIN nets as prototxt text: ours (the example's layers, the source swapped for ours) and the
    all-C++ recipe (Data over the LMDB + HDF5Data labels + SigmoidCrossEntropyLoss), the same layers between."""
    import json

    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    data, rest = example_layers()
    params = json.loads(data.python_param.param_str)
    batch, crop, scale = params["batch_size"], params["crop_size"], params["scale"]
    params.update(source=ours_list, num_classes=NUM_CLASSES, threads=threads)
    for key in ("root_folder", "class_names"):          # our list: absolute paths and class indices
        params.pop(key, None)
    ours_data = caffe_pb2.LayerParameter()
    ours_data.CopyFrom(data)
    del ours_data.include[:]
    ours_data.python_param.param_str = json.dumps(params)
    body = "".join("layer {\n%s}\n" % text_format.MessageToString(layer) for layer in rest[:-1])
    loss = rest[-1]
    ours = "name: \"ours\"\nlayer {\n%s}\n%slayer {\n%s}\n" % (
        text_format.MessageToString(ours_data), body, text_format.MessageToString(loss))
    cpp = ('name: "caffe"\n'
           'layer { name: "data" type: "Data" top: "data" top: "unused_label"\n'
           '  data_param { source: "%s" backend: LMDB batch_size: %d }\n'
           '  transform_param { crop_size: %d scale: %r } }\n'
           'layer { name: "labels" type: "HDF5Data" top: "label" hdf5_data_param { source: "%s" batch_size: %d } }\n'
           'layer { name: "silence" type: "Silence" bottom: "unused_label" }\n'
           '%slayer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "%s" bottom: "%s" top: "loss" }\n'
           % (lmdb_path, batch, crop, scale, h5_list, batch, body, loss.bottom[0], loss.bottom[1]))
    return {"ours": ours, "caffe": cpp}


def make_data(folder: str, count: int) -> tuple[str, str, str, float]:
    """The JPEGs, our list, the LMDB (``convert_imageset --gray``) and the HDF5 labels with its list file;
    returns our list, the LMDB path, the HDF5 list and the seconds convert_imageset took."""
    import time

    ours_list, single_list, labels = write_jpegs(os.path.join(folder, "img"), count, IMAGE_SIZE, NUM_CLASSES,
                                                 color=False)
    lmdb_path = os.path.join(folder, "images_lmdb")
    start = time.perf_counter()
    done = subprocess.run([os.path.join(ROOT, ".venv", "bin", "convert_imageset"), "--backend=lmdb", "--gray",
                           "--shuffle=false", "/", single_list, lmdb_path], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("benchmark: convert_imageset failed:\n%s" % done.stderr[-3000:])
    convert_s = time.perf_counter() - start
    h5 = os.path.join(folder, "labels.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("label", data=labels)
    h5_list = os.path.join(folder, "labels_h5.txt")
    with open(h5_list, "w") as f:
        f.write(h5 + "\n")
    return ours_list, lmdb_path, h5_list, convert_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Alternating ``caffe train`` runs of the two nets; best and every run, load before and after."""
    report: dict[str, Any] = {"command": command_line(args), "cpu": cpu_model()["model"], "cpu_count": os.cpu_count(),
                              "images": args.e2e_images, "iterations": args.e2e_iters, "warmup": args.e2e_warmup,
                              "runs": args.e2e_runs, "threads": args.e2e_threads, "load_start": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        ours_list, lmdb_path, h5_list, report["convert_imageset_s"] = make_data(tmp, args.e2e_images)
        texts = nets(tmp, ours_list, lmdb_path, h5_list, args.e2e_threads)
        report["nets"] = texts
        times: dict[str, list[float]] = {"ours": [], "caffe": []}
        for _ in range(args.e2e_runs):
            for key in ("ours", "caffe"):
                times[key].append(caffe_train_ms(tmp, key, texts[key], args.e2e_iters, args.e2e_warmup, SOLVER))
                print("  [train e2e] %-5s %7.1f ms/iteration" % (key, times[key][-1]), file=sys.stderr, flush=True)
    report["ms_all"] = times
    report["ms"] = {k: min(v) for k, v in times.items()}
    report["ms_median"] = {k: float(np.median(v)) for k, v in times.items()}
    report["ratio"] = report["ms"]["ours"] / report["ms"]["caffe"]
    report["ratio_median"] = report["ms_median"]["ours"] / report["ms_median"]["caffe"]
    report["load_end"] = load_average()
    return report


def markdown(r: dict[str, Any]) -> str:
    """The section: what was run, the table (goal <= 1.0x), every run and the load."""
    ms, med = r["ms"], r["ms_median"]
    lines = ["# End to end: ms per caffe train iteration, the image example's net", "",
             "Command: `%s`. CPU: %s, %d CPUs. The TRAIN net of `prototxt/multilabel_images/train_val.prototxt` "
             "(batch 64, 28x28 greyscale crops of %d 32x32 JPEGs, %d classes, Adam), %d iterations timed after %d, "
             "runs alternating. **ours**: MultilabelImageDataLayer (%d decode threads) + SoftmaxMultilabelLossLayer. "
             "**Caffe**: the all-C++ recipe of `prototxt/image_lmdb_hdf5/`: Data over an LMDB from "
             "`convert_imageset --gray` + HDF5Data labels + SigmoidCrossEntropyLoss (convert_imageset took %.1f s "
             "once, not counted). Load average (1, 5, 15 min, as `uptime`) at start %s, at end %s." % (
                 r["command"], r["cpu"], r["cpu_count"], r["images"], NUM_CLASSES, r["iterations"], r["warmup"],
                 r["threads"], r["convert_imageset_s"], r["load_start"], r["load_end"]),
             "",
             "| measure | ours | Caffe (LMDB + HDF5 + SigmoidCrossEntropyLoss) | ours / Caffe | goal | status |",
             "|---|---:|---:|---:|---|---|",
             "| ms/iteration, best of %d runs | %.1f | %.1f | %.2fx | <= 1.0x | %s |" % (
                 len(r["ms_all"]["ours"]), ms["ours"], ms["caffe"], r["ratio"],
                 "PASS" if r["ratio"] <= 1.0 else "FAIL"),
             "| ms/iteration, median of the runs | %.1f | %.1f | %.2fx | | |" % (
                 med["ours"], med["caffe"], r["ratio_median"]),
             "",
             "Every run (ms/iteration): ours %s, Caffe %s." % (
                 [round(v, 1) for v in r["ms_all"]["ours"]], [round(v, 1) for v in r["ms_all"]["caffe"]]),
             ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The end-to-end anchor's options."""
    parser.add_argument("--e2e-images", type=int, default=2000, help="32x32 JPEGs written for the end-to-end runs")
    parser.add_argument("--e2e-iters", type=int, default=60, help="timed caffe train iterations per run")
    parser.add_argument("--e2e-warmup", type=int, default=10, help="caffe train iterations before the timing")
    parser.add_argument("--e2e-runs", type=int, default=3, help="alternating runs per recipe (best is kept)")
    parser.add_argument("--e2e-threads", type=int, default=2, help="our data layer's decode threads (default 2)")


def selected(args: argparse.Namespace) -> bool:
    """``--e2e-iters 0`` leaves the anchor out."""
    return bool(args.e2e_iters > 0)
