"""``image_list`` anchor of ``make bench``: parsing a large list file, time and memory, next to Caffe's ImageData.

Writes a list of ``--list-lines`` lines (ImageNet-like paths, 1 to 3 labels of 1,000 classes, about 50 bytes a
line) and measures, each in a fresh process:

* ours: ``softmax_multilabel_layer.data.image_data.parse_image_list`` (one byte buffer of paths with offsets,
  labels in flat arrays);
* Caffe: a ``caffe.Net`` with one ``ImageData`` layer (``batch_size: 1``) over the same paths with one integer
  label each, the C++ side's anchor: ``ImageData`` keeps a ``vector<pair<string, int>>`` of the lines.

Reported: seconds, lines/s, and bytes per line of resident memory added (VmRSS after minus before) and of the
peak (VmHWM minus VmRSS before), both also beyond the list file's own size. Run standalone::

    .venv/bin/python scripts/bench/image_list.py --list-lines 1000000 [--out output/bench]

or as the ``image_list`` anchor of ``make bench`` (``scripts/benchmark.py --anchors image_list --list-lines
1M,10M`` for the two sizes of issue 26; the default is 1M). Speed numbers depend on the machine's load: the
report prints the load average.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

NAME = "image_list"
OUTPUT = "image_list"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The anchor's options."""
    parser.add_argument("--list-lines", default="1M",
                        help="lines of the list, comma-separated for several sizes, with k/M suffixes allowed "
                             "(default 1M, about 10 s on an idle 2-core machine; 1M,10M for both issue sizes, "
                             "10M takes about 2 minutes and 0.8 GB of disk in a temporary folder; none = skip)")
    parser.add_argument("--list-caffe", default="yes", choices=("yes", "no"),
                        help="also time Caffe's ImageData on the list (default yes)")


def selected(args: argparse.Namespace) -> bool:
    return str(args.list_lines) != "none"


def list_sizes(text: str) -> list[int]:
    """The sizes of ``--list-lines``: ``"1M,10M"`` -> [1000000, 10000000]; ``k`` and ``M`` are 10**3, 10**6."""
    sizes = []
    for item in str(text).split(","):
        item = item.strip()
        scale = {"k": 10 ** 3, "K": 10 ** 3, "m": 10 ** 6, "M": 10 ** 6}.get(item[-1:], 1)
        digits = item[:-1] if scale > 1 else item
        if not digits.isdigit() or int(digits) * scale < 1:
            raise ValueError("--list-lines takes a comma list of positive line counts such as 1M,10M or 3000, "
                             "got %r" % item)
        sizes.append(int(digits) * scale)
    return sizes


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a malformed ``--list-lines`` before any anchor runs (the harness calls this)."""
    if selected(args):
        try:
            list_sizes(args.list_lines)
        except ValueError as exc:
            parser.error(str(exc))


def write_lists(folder: str, lines: int, image: str) -> tuple[str, str]:
    """A multi-label list and the same paths with one integer label (Caffe's format); every line names
    ``image`` through a symlink-free relative path that exists: ``root/img.png`` with root_folder."""
    import numpy as np
    rng = np.random.default_rng(0)
    ours, caffes = os.path.join(folder, "list.txt"), os.path.join(folder, "caffe_list.txt")
    block = 100_000
    with open(ours, "w") as f, open(caffes, "w") as g:
        for start in range(0, lines, block):
            n = min(block, lines - start)
            counts = rng.integers(1, 4, n)
            labels = rng.integers(0, NUM_CLASSES, (n, 3))
            f.write("".join("n%08d/n%08d_%06d.JPEG %s\n" % (labels[j, 0], labels[j, 0], start + j,
                                                           " ".join(str(v) for v in sorted(set(labels[j, :counts[j]]))))
                            for j in range(n)))
            g.write("".join("%s %d\n" % (image, labels[j, 0]) for j in range(n)))
    return ours, caffes


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def list_worker(args: argparse.Namespace) -> None:
    """Measure one parser in this (fresh) process, started by :func:`_measure`; prints a JSON line.

    Not named ``worker``: the harness's ``--worker`` protocol is not used, this file runs itself instead."""
    if args.list_worker == "ours":
        from softmax_multilabel_layer.data.image_data import parse_image_list
        before = _status()
        start = time.perf_counter()
        parsed = parse_image_list(args.list_file, NUM_CLASSES)
        seconds = time.perf_counter() - start
        count = len(parsed.paths)
    else:
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        net_file = args.list_file + ".prototxt"
        with open(net_file, "w") as f:
            f.write('layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { source: "%s" '
                    'batch_size: 1 } }\n' % args.list_file)
        before = _status()
        start = time.perf_counter()
        net = caffe.Net(net_file, caffe.TEST)
        seconds = time.perf_counter() - start
        count = sum(1 for _ in open(args.list_file))
        del net
    after = _status()
    print(json.dumps({"seconds": seconds, "lines": count, "rss_added": after["VmRSS"] - before["VmRSS"],
                      "peak_added": after["VmHWM"] - before["VmRSS"]}))


def _measure(which: str, path: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--list-worker", which, "--list-file", path],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError("image_list worker %s failed (exit %d): %s" % (which, done.returncode, done.stderr[-2000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the lists and measure ours (and Caffe's ImageData) on each size; returns the report dict."""
    import cv2
    import numpy as np
    report: dict[str, Any] = {"load_average": os.getloadavg(), "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "img.png")
        cv2.imwrite(image, np.zeros((4, 4, 3), np.uint8))
        for lines in list_sizes(args.list_lines):
            ours, caffes = write_lists(tmp, lines, image)
            row: dict[str, Any] = {"lines": lines, "file_bytes": os.path.getsize(ours),
                                   "caffe_file_bytes": os.path.getsize(caffes), "ours": _measure("ours", ours)}
            if args.list_caffe == "yes":
                row["caffe"] = _measure("caffe", caffes)
            report["sizes"].append(row)
    report["load_average_after"] = os.getloadavg()
    return report


def markdown(result: dict[str, Any]) -> str:
    """The report section."""
    out = ["### Parsing a large list file (lines/s, bytes of memory per line)", "",
           "| lines | parser | s | lines/s | RSS added, B/line | beyond the file, B/line | peak, B/line |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for row in result["sizes"]:
        for key, label, size in (("ours", "ours (`parse_image_list`)", row["file_bytes"]),
                                 ("caffe", "Caffe `ImageData` (net set-up)", row["caffe_file_bytes"])):
            if key not in row:
                continue
            m, n = row[key], row["lines"]
            out.append("| %d | %s | %.2f | %.0f | %.0f | %.0f | %.0f |" % (
                n, label, m["seconds"], n / m["seconds"], m["rss_added"] / n, (m["rss_added"] - size) / n,
                m["peak_added"] / n))
    out += ["", "List files of %s bytes (ours) and %s bytes (Caffe's one-label copy); load average %s before, "
            "%s after." % (", ".join(str(r["file_bytes"]) for r in result["sizes"]),
                           ", ".join(str(r["caffe_file_bytes"]) for r in result["sizes"]),
                           " ".join("%.1f" % v for v in result["load_average"]),
                           " ".join("%.1f" % v for v in result["load_average_after"]))]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--out", help="write image_list.md and image_list.json here")
    parser.add_argument("--list-worker", choices=("ours", "caffe"), help=argparse.SUPPRESS)
    parser.add_argument("--list-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check(parser, args)
    if args.list_worker:
        list_worker(args)
        return 0
    result = run(args)
    text = markdown(result)
    sys.stdout.write(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for ext, body in ((".json", json.dumps(result, indent=1)), (".md", text)):
            path = os.path.join(args.out, OUTPUT + ext)
            with open(path + ".tmp", "w") as f:
                f.write(body)
            os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
