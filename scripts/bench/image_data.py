"""Anchor ``image_data`` of ``make bench``: our ``MultilabelImageDataLayer`` against Caffe's ``ImageData``.

On the same JPEGs (``--image-count`` of 256x256, crop 224, mirror, mean values, batch 32): images per
second of the data layer alone, and ms per ``caffe train`` iteration of a small net fed by either layer.
Writes ``image_data.md`` and ``image_data.json``.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.harness import caffe_train_ms, command_line, cpu_model, import_caffe, load_average, write_jpegs

# The targets (ours / Caffe): images/s at least Caffe's; caffe train ms/iteration at most 1.1 times Caffe's.
THROUGHPUT_TARGET = 1.0
TRAIN_TARGET = 1.1

NAME = "image_data"
OUTPUT = "image_data"

IMAGE_SIZE, IMAGE_CROP, IMAGE_BATCH, IMAGE_MEAN = 256, 224, 32, (104, 117, 123)


def image_data_layers(lists: tuple[str, str], threads: int, label_format: str = "dense") -> dict[str, str]:
    """The two data layers on the same images: ours (Python) and Caffe's C++ ImageData, same transform."""
    params = {"source": lists[0], "batch_size": IMAGE_BATCH, "num_classes": 20, "crop_size": IMAGE_CROP,
              "mirror": True, "mean_value": list(IMAGE_MEAN), "threads": threads, "shuffle": True, "seed": 1}
    if label_format == "indices":       # N x 1 class indices: the same label blob shape as ImageData's
        params.update(label_format="indices", max_labels=1, source=lists[1])
    ours = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
            'module: "softmax_multilabel_layer.data" layer: "MultilabelImageDataLayer" param_str: \'%s\' } }\n'
            % json.dumps(params))
    caffe_layer = ('layer { name: "data" type: "ImageData" top: "data" top: "label" image_data_param { '
                   'source: "%s" batch_size: %d shuffle: true } transform_param { crop_size: %d mirror: true %s } }\n'
                   % (lists[1], IMAGE_BATCH, IMAGE_CROP, " ".join("mean_value: %d" % m for m in IMAGE_MEAN)))
    return {"ours": ours, "caffe": caffe_layer}


def time_data_layer(caffe: Any, path: str, batches: int, warmup: int) -> float:
    """Images per second of one data-layer net: a fresh net, ``warmup`` forwards, then ``batches`` timed."""
    net = caffe.Net(path, caffe.TRAIN)
    try:
        for _ in range(warmup):
            net.forward()
        start = time.perf_counter()
        for _ in range(batches):
            net.forward()
        return batches * IMAGE_BATCH / (time.perf_counter() - start)
    finally:
        layer = net.layers[0]
        if hasattr(layer, "close"):       # pycaffe never frees a Python layer: stop its threads now
            layer.close()
        del net


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Our MultilabelImageDataLayer against Caffe's ImageData on the same JPEGs; returns a report dict.

    Throughput: rounds alternate between the two layers, each round a fresh net (so no layer prefetches
    while the other is timed), ``--image-batches`` timed forwards after a warm-up that empties the
    prefetch queue. Training: `caffe train` of the same small net (conv 7x7/4, pool, fc, SoftmaxWithLoss)
    fed by either layer, ms per iteration from the log (ours gives N x 1 class indices, ImageData's shape).
    """
    caffe = import_caffe()
    threads = int(args.image_threads)
    report = {"cpu": cpu_model()["model"], "cpu_count": os.cpu_count(), "images": args.image_count, "threads": threads,
              "rounds": args.image_rounds, "batches": args.image_batches, "train_iters": args.train_iters,
              "load_start": load_average(), "command": command_line(args)}
    with tempfile.TemporaryDirectory(prefix="bench_images_") as tmp:
        lists = write_jpegs(os.path.join(tmp, "img"), args.image_count, IMAGE_SIZE, num_classes=20)[:2]
        nets = {}
        for key, layer in image_data_layers(lists, threads).items():
            nets[key] = os.path.join(tmp, "data_%s.prototxt" % key)
            with open(nets[key], "w") as f:
                f.write(layer)
        rates: dict[str, list[float]] = {"ours": [], "caffe": []}
        for _ in range(args.image_rounds):
            for key in ("ours", "caffe"):
                rates[key].append(time_data_layer(caffe, nets[key], args.image_batches, warmup=6))
                print("  [image data] %-5s %7.0f images/s" % (key, rates[key][-1]), file=sys.stderr, flush=True)
        report["images_per_s"] = {k: statistics.median(v) for k, v in rates.items()}
        report["images_per_s_all"] = rates
        report["throughput_ratio"] = report["images_per_s"]["ours"] / report["images_per_s"]["caffe"]
        train: dict[str, list[float]] = {"ours": [], "caffe": []}
        if args.train_iters > 0:
            layers = image_data_layers(lists, threads, label_format="indices")
            for _ in range(args.train_runs):
                for key in ("ours", "caffe"):
                    train[key].append(caffe_train_ms(tmp, key, layers[key] + SMALL_NET, args.train_iters))
                    print("  [caffe train] %-5s %7.1f ms/iteration" % (key, train[key][-1]), file=sys.stderr,
                          flush=True)
            report["train_ms"] = {k: min(v) for k, v in train.items()}
            report["train_ms_all"] = train
            report["train_ratio"] = report["train_ms"]["ours"] / report["train_ms"]["caffe"]
    report["load_end"] = load_average()
    return report


def markdown(r: dict[str, Any]) -> str:
    command = r["command"]
    lines = ["# Image data layer benchmark: MultilabelImageDataLayer vs Caffe's ImageData", ""]
    lines.append("Command: `%s`. CPU: %s, %d CPUs. %d JPEGs of %dx%d, crop %d, mirror, mean_value %s, batch %d, "
                 "TRAIN phase, shuffle; ours with %d decode threads, ImageData with its one prefetch thread. "
                 "Load average at start %s, at end %s." % (
                     command, r["cpu"], r["cpu_count"], r["images"], IMAGE_SIZE, IMAGE_SIZE, IMAGE_CROP,
                     list(IMAGE_MEAN), IMAGE_BATCH, r["threads"], [round(v, 2) for v in r["load_start"]],
                     [round(v, 2) for v in r["load_end"]]))
    lines.append("")
    lines.append("| measure | ours | Caffe ImageData | ours / Caffe | target | status |")
    lines.append("|---|---:|---:|---:|---|---|")
    ips = r["images_per_s"]
    lines.append("| images/s (median of %d rounds of %d batches) | %.0f | %.0f | %.2fx | >= %.1fx | %s |" % (
        r["rounds"], r["batches"], ips["ours"], ips["caffe"], r["throughput_ratio"], THROUGHPUT_TARGET,
        "PASS" if r["throughput_ratio"] >= THROUGHPUT_TARGET else "FAIL"))
    if "train_ms" in r:
        t = r["train_ms"]
        lines.append("| caffe train ms/iteration, small net (best of %d runs of %d iterations) | %.1f | %.1f | %.2fx "
                     "| <= %.1fx | %s |" % (len(r["train_ms_all"]["ours"]), r["train_iters"], t["ours"], t["caffe"],
                                           r["train_ratio"], TRAIN_TARGET,
                                           "PASS" if r["train_ratio"] <= TRAIN_TARGET else "FAIL"))
    lines.append("")
    lines.append("Every round: images/s ours %s, Caffe %s." % (
        [round(v) for v in r["images_per_s_all"]["ours"]], [round(v) for v in r["images_per_s_all"]["caffe"]]))
    lines.append("")
    return "\n".join(lines)


SMALL_NET = """layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 7 stride: 4 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "scores"
  inner_product_param { num_output: 20 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "scores" bottom: "label" top: "loss" }
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The image data anchor's options (``--skip-image-data`` / ``--only-image-data`` kept from before the split)."""
    parser.add_argument("--skip-image-data", action="store_true", help="leave out the image data layer comparison")
    parser.add_argument("--only-image-data", action="store_true",
                        help="run only the image data layer comparison (= --anchors image_data)")
    parser.add_argument("--image-count", type=int, default=256, help="JPEGs in the image data comparison")
    parser.add_argument("--image-rounds", type=int, default=5, help="alternating rounds per data layer")
    parser.add_argument("--image-batches", type=int, default=20, help="timed batches per round")
    parser.add_argument("--image-threads", type=int, default=2, help="our layer's decode threads (default 2)")
    parser.add_argument("--train-iters", type=int, default=40, help="timed caffe train iterations (0 = skip)")
    parser.add_argument("--train-runs", type=int, default=3, help="caffe train runs per data layer (best is kept)")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Map the two old flags onto ``--anchors``."""
    if args.only_image_data:
        args.anchors = NAME
    elif args.skip_image_data:
        args.anchors = ",".join(a for a in args.anchors.split(",") if a.strip() != NAME)
