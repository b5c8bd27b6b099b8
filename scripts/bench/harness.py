"""The shared harness of ``make bench``: options, environment report, timing helpers, output files.

``scripts/benchmark.py`` is the entry point; it hands the list of anchors to :func:`main`. An anchor is
one comparison that ``make bench`` runs and reports, in its own module of this folder:

* ``losses``: our loss layers against Caffe's C++ losses, the blog layer and a numpy floor (``losses.py``);
* ``metrics``: ``softmax_multilabel_layer.evaluation.metrics`` against scikit-learn, time and peak
  memory (``metrics.py``);
* ``image_data``: our image data layer against Caffe's ``ImageData`` (``image_data.py``);
* ``image_list``: parsing a large list file against Caffe's ``ImageData`` set-up (``image_list.py``);
* ``train``: ``caffe train`` fed by our data layer against ``convert_imageset`` + ``Data`` (``train_e2e.py``).

Each anchor's result gets a ``"recorded"`` entry (date, load average at its start and end, CPU, numpy's SIMD
kind, BLAS threads, the command): ``scripts/docs.py`` prints it beside every figure it takes into the docs.

**Adding an anchor.** Write ``scripts/bench/<name>.py`` with these module-level names and add the module
to ``ANCHORS`` in ``scripts/benchmark.py``::

    NAME = "<name>"          # its name in --anchors and in the output
    OUTPUT = "<name>"        # file stem: writes <out>/<stem>.md and <out>/<stem>.json
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # its options, prefixed by its name
    def run(args: argparse.Namespace) -> dict: ...                    # measure; a JSON-serializable dict
    def markdown(result: dict) -> str: ...                            # the report section, markdown

and optionally ``selected(args) -> bool`` (False leaves the anchor out, e.g. when its size option is
``none``) and ``worker(args) -> None`` (run in a subprocess by ``scripts/benchmark.py --worker <name>``,
for measurements that need a fresh process). Anchors that share an ``OUTPUT`` stem share the files: the
first anchor's dict is the top level of the JSON and later ones are nested under their ``NAME``; their
markdown sections are concatenated. :func:`main` runs the selected anchors in ``ANCHORS`` order, prints
each section and writes the files under temporary names, renamed when complete.

Helpers an anchor can use: :func:`import_caffe`, :func:`summarize` (median, quartiles, CPU time of timed
repetitions), :func:`environment` / :func:`cpu_model` (what the report says about the machine),
:func:`load_average`, :func:`timed`, :func:`peak_mb` (tracemalloc), :func:`caffe_train_ms` (ms per
``caffe train`` iteration from the log), :func:`write_jpegs` (a folder of JPEGs and their lists),
:func:`fmt` (numbers in tables), :func:`command_line`.
Speed numbers are read only with the load average beside them: the machine may be shared.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, cast

import numpy as np

from softmax_multilabel_layer.losses.cpu import numpy_cpu_features

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # scripts/
ROOT = os.path.dirname(HERE)
ENTRY = os.path.join(HERE, "benchmark.py")                               # the entry point, for --worker runs


# ---------------------------------------------------------------- set-up helpers

def import_caffe() -> Any:
    """Import pycaffe; if the venv's .pth is missing, fall back to the cached build (scripts/install_caffe.sh)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    for path in (ROOT, os.path.join(ROOT, "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        import caffe
    except ImportError:
        try:
            root = subprocess.run(["bash", os.path.join(HERE, "install_caffe.sh"), sys.executable, "--print-root"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            root = ""
        if root and os.path.isdir(os.path.join(root, "python", "caffe")):
            sys.path.insert(0, os.path.join(root, "python"))
        try:
            import caffe
        except ImportError as exc:
            raise SystemExit("benchmark: cannot import caffe (%s); run `make setup` first" % exc) from None
    caffe.set_mode_cpu()
    return caffe


def summarize(times: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Statistics of (wall, CPU) time pairs: wall-clock median, quartiles and minimum; the CPU-time median.

    The CPU time (this process, all its threads) leaves out the time the process waits for a core, so on a
    shared machine it shows the work done when the wall-clock figures are inflated by other processes.
    """
    wall = [t for t, _ in times]
    ordered = sorted(wall)
    q = len(ordered)
    return {"median_ms": statistics.median(wall) * 1e3, "min_ms": ordered[0] * 1e3,
            "p25_ms": ordered[q // 4] * 1e3, "p75_ms": ordered[(3 * q) // 4] * 1e3, "reps": q,
            "cpu_median_ms": statistics.median(c for _, c in times) * 1e3}


# ---------------------------------------------------------------- environment report

def cpu_model() -> dict[str, Any]:
    """The CPU model name and whether the CPU itself has AVX2 and AVX-512F (from /proc/cpuinfo on Linux)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def simd_kind(enabled: Sequence[str]) -> str:
    """"AVX-512" when numpy dispatches to AVX-512 (SKX), "AVX2" when only AVX2, else the best found."""
    if "AVX512_SKX" in enabled:
        return "AVX-512"
    if "AVX2" in enabled:
        return "AVX2"
    return enabled[-1] if enabled else "unknown"


def environment() -> dict[str, Any]:
    """Python, numpy, BLAS, SIMD dispatch, thread pools and the thread variables of this process."""
    enabled, _ = numpy_cpu_features()
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "cpu": cpu_model(), "simd_kind": simd_kind(enabled),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                   "NPY_DISABLE_CPU_FEATURES")}}
    try:
        # numpy >= 1.25; its type stub still says show_config() takes no argument and returns None.
        config: dict[str, Any] = cast(Callable[..., dict[str, Any]], np.show_config)(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
        simd = config.get("SIMD Extensions", {})
        info["numpy_simd_build"] = {"baseline": simd.get("baseline"), "found": simd.get("found")}
    except Exception as exc:                                  # older numpy: no mode="dicts"
        info["numpy_blas"] = {"error": repr(exc)}
    info["numpy_cpu_features_enabled"], info["numpy_cpu_dispatch"] = enabled, numpy_cpu_features()[1]
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: pool.get(k) for k in ("user_api", "internal_api", "prefix", "filepath",
                                                         "version", "num_threads", "threading_layer",
                                                         "architecture")} for pool in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


# ---------------------------------------------------------------- timing and table helpers

def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table: "-" for None, fewer decimals as it grows."""
    if value is None:
        return "-"
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.*f" % (digits, value)


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median seconds of ``reps`` calls of fn() and the last value it returned."""
    times: list[float] = []
    value = None
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory allocated during fn() (numpy arrays included: numpy reports to tracemalloc), in MB."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (as `uptime` prints them), rounded to 2 decimals."""
    return [round(v, 2) for v in os.getloadavg()]


_ITERATION_LINE = re.compile(r"I\d+ (\d+):(\d+):([\d.]+) .*\] Iteration (\d+)(?: \(.*\))?, loss = ")


SOLVER_DEFAULTS = {"type": '"SGD"', "base_lr": "0.01", "momentum": "0.9", "lr_policy": '"fixed"'}


def caffe_train_ms(workdir: str, name: str, net_text: str, iterations: int, warmup: int = 5,
                   solver: dict[str, str] | None = None) -> float:
    """Mean ms per `caffe train` iteration after ``warmup`` iterations, from the glog timestamps of the loss
    lines (display: 1).

    Writes ``train_<name>.prototxt`` (``net_text``) and a solver into ``workdir`` and runs
    ``.venv/bin/caffe train`` there. The solver is :data:`SOLVER_DEFAULTS` (SGD, fixed rate 0.01, momentum
    0.9) updated by ``solver`` (prototxt field: value as written, e.g. ``{"type": '"Adam"'}``), with seed 1,
    CPU mode, no snapshot.
    """
    net = os.path.join(workdir, "train_%s.prototxt" % name)
    with open(net, "w") as f:
        f.write(net_text)
    fields = dict(SOLVER_DEFAULTS, **(solver or {}))
    path = os.path.join(workdir, "solver_%s.prototxt" % name)
    with open(path, "w") as f:
        f.write('net: "%s"\n%smax_iter: %d\ndisplay: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n'
                'random_seed: 1\n' % (net, "".join("%s: %s\n" % kv for kv in fields.items()), warmup + iterations))
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    done = subprocess.run([os.path.join(ROOT, ".venv", "bin", "caffe"), "train", "--solver", path],
                          capture_output=True, text=True, env=env, cwd=workdir, timeout=1800)
    if done.returncode != 0:
        raise SystemExit("benchmark: caffe train (%s) failed:\n%s" % (name, done.stderr[-3000:]))
    stamps = []
    for line in done.stderr.splitlines():
        m = _ITERATION_LINE.match(line)
        if m:
            h, mi, sec, it = int(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4))
            stamps.append((it, h * 3600 + mi * 60 + sec))
    after = [s for s in stamps if s[0] >= warmup]
    if not after or stamps[-1][0] <= after[0][0]:
        raise SystemExit("benchmark: no iteration timings in the caffe train log (%s)" % name)
    first, last = after[0], stamps[-1]
    return 1e3 * (last[1] - first[1]) / (last[0] - first[0])


def write_jpegs(folder: str, count: int, size: int, num_classes: int, color: bool = True,
                seed: int = 0) -> tuple[str, str, np.ndarray]:
    """``count`` size x size JPEGs (smooth random fields with fine noise, like photos; ~20 KB each at 256x256
    colour) and two lists of them with absolute paths: ``ours.txt`` (1-3 class indices an image) and
    ``imagedata.txt`` (the first of them, for Caffe's one-label layers). Returns the two list paths and the
    count x num_classes float32 multi-hot labels in list order."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ours, single = [], []
    multi_hot = np.zeros((count, num_classes), np.float32)
    channels = (3,) if color else ()
    for i in range(count):
        low = rng.integers(0, 256, (12, 12) + channels).astype(np.uint8)
        img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 20, img.shape).astype(np.uint8))
        path = os.path.join(os.path.abspath(folder), "img_%05d.jpg" % i)
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        labels = rng.choice(num_classes, size=int(rng.integers(1, 4)), replace=False)
        multi_hot[i, labels] = 1
        ours.append("%s %s\n" % (path, " ".join(str(c) for c in labels)))
        single.append("%s %d\n" % (path, labels[0]))
    lists = os.path.join(folder, "ours.txt"), os.path.join(folder, "imagedata.txt")
    for list_path, lines in zip(lists, (ours, single), strict=True):
        with open(list_path, "w") as f:
            f.writelines(lines)
    return lists[0], lists[1], multi_hot


# ---------------------------------------------------------------- running the anchors

def command_line(args: argparse.Namespace) -> str:
    """The command the report names: ``--command`` if given, else this process's command line."""
    return args.command or " ".join(["python", "scripts/benchmark.py"] + sys.argv[1:])


def _write_atomically(path: str, text: str) -> None:
    tmp = path + ".part"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(anchors: Sequence[ModuleType], argv: Sequence[str] | None = None, description: str = "") -> None:
    """Parse the options of the harness and of every anchor, then run the selected anchors in order.

    Each anchor's markdown is printed as soon as it has run; the files of an ``OUTPUT`` stem are rewritten
    (under a temporary name, then renamed) after each of its anchors, so a failing later anchor leaves the
    earlier results on disk.
    """
    names = [a.NAME for a in anchors]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=os.path.join(ROOT, "output", "bench"), help="output folder")
    parser.add_argument("--anchors", default=",".join(names),
                        help="comma list of the anchors to run (default: all, %(default)s)")
    parser.add_argument("--command", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=names, help=argparse.SUPPRESS)
    for anchor in anchors:
        anchor.add_arguments(parser)
    args = parser.parse_args(argv)
    for anchor in anchors:
        if hasattr(anchor, "check"):
            anchor.check(parser, args)
    wanted = [n.strip() for n in args.anchors.split(",") if n.strip()]
    for name in wanted:
        if name not in names:
            parser.error("--anchors takes a comma list of %s, got %r" % (", ".join(names), name))
    if args.worker:
        anchors[names.index(args.worker)].worker(args)
        return
    os.makedirs(args.out, exist_ok=True)
    outputs: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for anchor in anchors:
        if anchor.NAME not in wanted or (hasattr(anchor, "selected") and not anchor.selected(args)):
            continue
        load_before, started = load_average(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result = anchor.run(args)
        # When and under what load: the docs print it beside every figure taken from this file (scripts/docs.py).
        result.setdefault("recorded", {"anchor": anchor.NAME, "date": started, "load_before": load_before,
                                       "load_after": load_average(),
                                       "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                                       "simd": simd_kind(numpy_cpu_features()[0]),
                                       "threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS",
                                                                                  "OMP_NUM_THREADS")},
                                       "command": command_line(args)})
        text = anchor.markdown(result)
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
        if anchor.OUTPUT in outputs:
            report, texts = outputs[anchor.OUTPUT]
            report[anchor.NAME] = result
            texts.append(text)
        else:
            report, texts = outputs.setdefault(anchor.OUTPUT, (result, [text]))
        base = os.path.join(args.out, anchor.OUTPUT)
        _write_atomically(base + ".json", json.dumps(report, indent=1))
        _write_atomically(base + ".md", "".join(texts))
        print("benchmark: wrote %s.md and %s.json" % (base, base), file=sys.stderr, flush=True)
