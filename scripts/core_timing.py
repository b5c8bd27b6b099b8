"""Time the loss core of a source tree: forward + backward with a Workspace and ``out=``, float32, one process.

For before/after comparisons across commits (``git worktree add /tmp/old <commit>``), run once per tree,
interleaved, with the same interpreter; ``make bench`` is the side-by-side comparison with Caffe's layers.

    .venv/bin/python scripts/core_timing.py /tmp/old 7               # trained-like scores
    .venv/bin/python scripts/core_timing.py . 7 unconfident          # N(0, 3) scores, as make bench
    NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL" ...  # AVX2 dispatch

Prints one JSON object: case -> best time in ms (best of ``repeat`` rounds of 20 calls).
"""
import argparse
import importlib
import inspect
import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Call = Callable[[Any, NDArray[np.float32]], Any]


def cases(F: Any, s: NDArray[np.float32], idx: NDArray[np.float32], x: NDArray[np.float32],
          y: NDArray[np.float32], no_p: dict[str, Any]) -> dict[str, Call]:
    """One forward + backward per case, given a workspace and an output array."""
    return {
        "softmax dense": lambda ws, out: F.softmax_multilabel_backward(
            F.softmax_multilabel_forward(s, y, workspace=ws)[1], out=out),
        "softmax indices": lambda ws, out: F.softmax_multilabel_backward(
            F.softmax_multilabel_forward(s, idx, workspace=ws, label_format="indices")[1], out=out),
        "sigmoid BCE": lambda ws, out: F.sigmoid_multilabel_backward(
            F.sigmoid_multilabel_forward(x, y, workspace=ws, **no_p)[1], out=out),
        "sigmoid focal": lambda ws, out: F.sigmoid_multilabel_backward(
            F.sigmoid_multilabel_forward(x, y, workspace=ws, gamma=2, **no_p)[1], out=out)}


def functional_of(tree: str) -> Any:
    """The functional API of the package in ``tree``: ``losses.functional`` since the package was arranged
    in rooms, ``functional`` in older trees."""
    sys.path.insert(0, tree)
    try:
        return importlib.import_module("softmax_multilabel_layer.losses.functional")
    except ModuleNotFoundError:
        return importlib.import_module("softmax_multilabel_layer.functional")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", help="a source tree of the project (its softmax_multilabel_layer is timed)")
    parser.add_argument("repeat", type=int, help="rounds of 20 calls; the best round is kept")
    parser.add_argument("inputs", nargs="?", choices=("trained", "unconfident"), default="trained",
                        help="trained-like scores (default) or N(0, 3) scores, as make bench")
    args = parser.parse_args(argv)
    tree, repeat, unconfident = args.tree, args.repeat, args.inputs == "unconfident"
    F = functional_of(tree)
    # Trees without the probabilities switch always skip sigmoid(x); newer ones are told to skip it too.
    has_switch = "probabilities" in inspect.signature(F.sigmoid_multilabel_forward).parameters
    no_p: dict[str, Any] = {"probabilities": False} if has_switch else {}
    rng = np.random.default_rng(0)
    result = {}
    for n, c in [(256, 1000), (64, 17000)]:
        pos = np.stack([rng.choice(c, 3, replace=False) for _ in range(n)])
        y = np.zeros((n, c), np.float32)
        np.put_along_axis(y, pos, 1.0, axis=1)
        if unconfident:
            s = (rng.normal(size=(n, c)) * 3).astype(np.float32)
            x = s.copy()
        else:
            s = (rng.normal(size=(n, c)) * 2).astype(np.float32)
            s[np.arange(n)[:, None], pos] += 6
            x = (np.where(y > 0, 6.0, -6.0) + rng.normal(0, 2, (n, c))).astype(np.float32)
        for name, call in cases(F, s, pos.astype(np.float32), x, y, no_p).items():
            ws, out = F.Workspace(), np.empty((n, c), np.float32)
            call(ws, out)
            best = min(timeit.repeat(lambda: call(ws, out), number=20, repeat=repeat)) / 20   # noqa: B023 (used now)
            result["%s %dx%d" % (name, n, c)] = round(best * 1e3, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
