"""Running ``caffe train`` and reading its log: what the examples (and users) share.

Caffe's own ``tools/extra/parse_log.py`` turns a training log into loss curves; this module does the same for
the lines the examples need, and runs ``caffe train`` with a short progress line instead of glog's output:

* :func:`caffe_binary` (the ``caffe`` executable beside this Python, e.g. ``.venv/bin/caffe``),
  :func:`caffe_env` (glog to the pipe, INFO level, the package on ``PYTHONPATH`` for Python layers);
* :func:`set_solver_field` (rewrite one top-level ``key: value`` line of a solver prototxt);
* :func:`train` (run ``caffe train --solver``, tee the log, report progress through :class:`ProgressFilter`);
* :func:`parse_log` (training and test losses, learning rates and snapshots of a log), :func:`snapshot_iteration`,
  :func:`list_snapshots`;
* :func:`forward_in_batches` (a pycaffe net over an array data set, in batches: scores for metrics);
* :func:`run_statistics` (mean, sample std, min, max of one number over runs or seeds).

Example::

    from softmax_multilabel_layer.tools.train import parse_log, train
    code = train("solver.prototxt", "train.log", on_progress=print, progress_every=100)
    curves = parse_log(open("train.log").read())      # {"train": [(iter, loss)], "test": [...], ...}

No Caffe import: the runner calls the ``caffe`` executable; :func:`forward_in_batches` takes a pycaffe net.
"""
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.params import MultilabelLossError

__all__ = ["ProgressFilter", "TrainLog", "caffe_binary", "caffe_env", "forward_in_batches", "list_snapshots",
           "parse_log", "run_statistics", "set_solver_field", "snapshot_iteration", "train"]

# The glog lines of Caffe's solver (solver.cpp, sgd_solver.cpp) that parse_log and ProgressFilter read.
TRAIN_RE = re.compile(r"\] Iteration (\d+)(?: \([\d.]+ iter/s, [\d.]+s/\d+ iters\))?, loss = (\S+)")
TEST_START_RE = re.compile(r"\] Iteration (\d+), Testing net")
TEST_LOSS_RE = re.compile(r"Test net output #\d+: loss = (\S+)")
LR_RE = re.compile(r"\] Iteration (\d+), lr = (\S+)")
SNAPSHOT_RE = re.compile(r"Snapshotting to binary proto file (\S+)")
ERROR_RE = re.compile(r"^[FE]\d{4}")
_SNAPSHOT_NAME_RE = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")
# The folder that holds the package (the repository root in a source checkout).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TrainLog(TypedDict):
    """What :func:`parse_log` reads from a ``caffe train`` log."""

    train: list[tuple[int, float]]
    test: list[tuple[int, float]]
    lr: list[tuple[int, float]]
    snapshots: list[str]


def caffe_binary() -> str:
    """The ``caffe`` executable: the one beside this Python (``make setup`` writes ``.venv/bin/caffe``), else the
    first ``caffe`` on ``PATH``.

    Raises:
        MultilabelLossError: when there is neither.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "caffe")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("caffe")
    if found is None:
        raise MultilabelLossError("caffe train: no caffe executable beside %s or on PATH; run `make setup`"
                                  % sys.executable)
    return found


def caffe_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``caffe train``: ``base`` (default ``os.environ``) with glog writing INFO lines (which
    carry the losses) to the pipe only, ``OPENBLAS_NUM_THREADS`` 1 unless set (runs often go in parallel, one
    core each), and the folder holding this package first on ``PYTHONPATH`` (for the Python layers)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["GLOG_logtostderr"] = "1"
    env["GLOG_minloglevel"] = "0"
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def set_solver_field(text: str, key: str, value: object) -> str:
    """Set the first top-level ``key: value`` line of a solver prototxt text (appended when missing).

    Args:
        text: the solver prototxt.
        key: a top-level field (``max_iter``, ``base_lr``, ``net``...).
        value: written as ``str(value)``; quote strings yourself (``'"%s"' % path``).

    Returns:
        The new text; e.g. ``set_solver_field("max_iter: 10\\n", "max_iter", 20) == "max_iter: 20\\n"``.
    """
    line = "%s: %s" % (key, value)
    pattern = re.compile(r"^%s:.*$" % re.escape(key), re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    return text.rstrip("\n") + "\n" + line + "\n"


class ProgressFilter:
    """Caffe log line -> short progress text, or None for the rest of glog's output.

    Keeps the training-loss lines at multiples of ``train_every``, every test loss (with its iteration), the end
    of optimization, resumes and errors (``F``/``E`` glog lines, Python tracebacks).

    Example::

        progress = ProgressFilter(100)
        progress("I1203 ... solver.cpp:218] Iteration 200 (5 iter/s, 20s/100 iters), loss = 0.5")
        # -> "iter   200  train loss 0.5"
    """

    def __init__(self, train_every: int = 1) -> None:
        self.train_every = max(1, int(train_every))
        self.testing_iter: str | None = None

    def __call__(self, line: str) -> str | None:
        m = TRAIN_RE.search(line)
        if m:
            if int(m.group(1)) % self.train_every:
                return None
            return "iter %5s  train loss %s" % (m.group(1), m.group(2))
        m = TEST_START_RE.search(line)
        if m:
            self.testing_iter = m.group(1)
            return None
        m = TEST_LOSS_RE.search(line)
        if m:
            return "iter %5s  test loss  %s" % (self.testing_iter, m.group(1))
        if ("Optimization Done" in line and "solver.cpp" in line) or "stopped early" in line \
                or "Resuming from" in line:
            return line.split("] ", 1)[-1].strip()
        if ERROR_RE.match(line) or "Error" in line or "Traceback" in line:
            return line.rstrip()
        return None


def train(solver_path: str, log_path: str, snapshot: str | None = None,
          on_progress: Callable[[str], None] | None = None, progress_every: int = 1,
          extra_args: Sequence[str] = (), cwd: str | None = None, caffe: str | None = None) -> int:
    """Run ``caffe train --solver solver_path`` and write its whole log to ``log_path``.

    Args:
        solver_path: the solver prototxt.
        log_path: the log file, written (appended when resuming); its first line is ``# <command>``.
        snapshot: a ``.solverstate`` to resume from (``--snapshot``).
        on_progress: called with each progress line (see :class:`ProgressFilter`).
        progress_every: report the training loss at multiples of this iteration.
        extra_args: more ``caffe train`` arguments.
        cwd: the folder caffe runs in (relative paths in the prototxts are resolved there); default the current.
        caffe: the executable; default :func:`caffe_binary`.

    Returns:
        caffe's exit code (0 when training finished).
    """
    cmd = [caffe or caffe_binary(), "train", "--solver", solver_path]
    if snapshot:
        cmd += ["--snapshot", snapshot]
    cmd += list(extra_args)
    with open(log_path, "a" if snapshot else "w") as log:
        log.write("# %s\n" % " ".join(cmd))
        log.flush()
        progress = ProgressFilter(progress_every)
        with subprocess.Popen(cmd, cwd=cwd, env=caffe_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as proc:
            assert proc.stdout is not None              # stdout=PIPE
            for line in proc.stdout:
                log.write(line)
                if on_progress is not None:
                    text = progress(line)
                    if text:
                        on_progress(text)
        return proc.returncode


def parse_log(text: str) -> TrainLog:
    """The curves of a ``caffe train`` log, as Caffe's ``tools/extra/parse_log.py`` reads them.

    Returns:
        ``{"train": [(iteration, loss)], "test": [(iteration, test loss)], "lr": [(iteration, rate)],
        "snapshots": [caffemodel paths]}``, each sorted by iteration; a resumed run's repeated iterations keep
        the last value. A test loss belongs to the iteration of the ``Testing net`` line before it.
    """
    train_loss: dict[int, float] = {}
    test_loss: dict[int, float] = {}
    rates: dict[int, float] = {}
    snaps: list[str] = []
    testing_iter = None
    for line in text.splitlines():
        m = TRAIN_RE.search(line)
        if m:
            train_loss[int(m.group(1))] = float(m.group(2))
            continue
        m = TEST_START_RE.search(line)
        if m:
            testing_iter = int(m.group(1))
            continue
        m = TEST_LOSS_RE.search(line)
        if m and testing_iter is not None:
            test_loss[testing_iter] = float(m.group(1))
            testing_iter = None
            continue
        m = LR_RE.search(line)
        if m:
            rates[int(m.group(1))] = float(m.group(2))
            continue
        m = SNAPSHOT_RE.search(line)
        if m and m.group(1) not in snaps:
            snaps.append(m.group(1))
    return {"train": sorted(train_loss.items()), "test": sorted(test_loss.items()), "lr": sorted(rates.items()),
            "snapshots": snaps}


def snapshot_iteration(path: str) -> int | None:
    """The iteration in a snapshot name (``snap_iter_500.caffemodel`` -> 500; ``.solverstate`` and ``.h5`` too),
    or None."""
    m = _SNAPSHOT_NAME_RE.search(path)
    return int(m.group(1)) if m else None


def list_snapshots(run_dir: str, ext: str = "caffemodel") -> list[tuple[int, str]]:
    """``[(iteration, path)]`` of the ``*_iter_N.<ext>`` snapshots in ``run_dir``, by iteration."""
    out = []
    for name in os.listdir(run_dir):
        if name.endswith("." + ext):
            it = snapshot_iteration(name)
            if it is not None:
                out.append((it, os.path.join(run_dir, name)))
    return sorted(out)


def forward_in_batches(net: Any, data: NDArray[Any], blobs: Iterable[str], batch_size: int = 100,
                       input_blob: str = "data") -> dict[str, NDArray[np.float32]]:
    """Forward an array data set through a pycaffe net in batches.

    Args:
        net: a ``caffe.Net`` (deploy or TEST phase) whose input blob is ``input_blob``; it is reshaped to each
            batch (the last one may be smaller).
        data: N x ... inputs, in the input blob's layout.
        blobs: the blobs to collect.
        batch_size: rows per forward pass.

    Returns:
        ``{blob: N x D array}``, each blob flattened per sample (float32, copied out of the net).
    """
    names = list(blobs)
    chunks: dict[str, list[NDArray[np.float32]]] = {b: [] for b in names}
    for start in range(0, len(data), batch_size):
        x = data[start:start + batch_size]
        if net.blobs[input_blob].data.shape != x.shape:
            net.blobs[input_blob].reshape(*x.shape)
            net.reshape()
        net.blobs[input_blob].data[...] = x
        net.forward()
        for b in names:
            chunks[b].append(net.blobs[b].data.reshape(len(x), -1).copy())
    return {b: np.concatenate(v, axis=0) for b, v in chunks.items()}


def run_statistics(values: ArrayLike) -> dict[str, float]:
    """Mean, sample standard deviation (ddof 1; 0 for one value), min, max and count of one number over runs.

    Example: ``run_statistics([1.0, 3.0]) == {"mean": 2.0, "std": 1.414..., "min": 1.0, "max": 3.0, "n": 2}``.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise MultilabelLossError("run_statistics: no values")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}
