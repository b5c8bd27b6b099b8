"""Summary statistics, markdown tables and the loss / mAP plot of a demo run."""
from typing import Any

import numpy as np

from softmax_multilabel_layer.tools.train import run_statistics

from digits_train import LOSS_NAMES, VARIANTS

METRICS = (("mAP", "test mAP"), ("precision_at_m", "precision@M"),
           ("exact_set_accuracy", "exact-set acc (top-M)"))


stats = run_statistics          # mean, std (ddof 1), min, max, n of one number over seeds


def summarize(runs):
    """runs (each with variant, seed, final metrics, train_seconds) -> {variant: {metric: stats}}."""
    out: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        rs = [r for r in runs if r["variant"] == variant]
        if not rs:
            continue
        out[variant] = {key: stats([r["final"][key] for r in rs]) for key, _ in METRICS}
        out[variant]["train_seconds"] = stats([r["train_seconds"] for r in rs])
        out[variant]["seeds"] = [r["seed"] for r in rs]
    return out


def _fmt(s):
    if s["n"] == 1:
        return "%.4f" % s["mean"]
    return "%.4f ± %.4f (%.4f–%.4f)" % (s["mean"], s["std"], s["min"], s["max"])


def by_m_table(runs):
    """Markdown: exact-set accuracy by the true number of digits M (mean over seeds)."""
    ms = sorted({int(m) for r in runs for m in r["final"]["exact_set_accuracy_by_m"]})
    lines = ["| Loss | " + " | ".join("M=%d" % m for m in ms) + " |", "|---|" + "---|" * len(ms)]
    for variant in VARIANTS:
        rs = [r for r in runs if r["variant"] == variant]
        if rs:
            cells = ["%.4f" % np.mean([_by_m(r, m) for r in rs]) for m in ms]
            lines.append("| %s | %s |" % (LOSS_NAMES[variant], " | ".join(cells)))
    return "\n".join(lines)


def _by_m(run, m):
    by_m = run["final"]["exact_set_accuracy_by_m"]
    return by_m[m] if m in by_m else by_m[str(m)]     # int keys, or str keys after JSON


def markdown_table(summary, runs):
    head = ["Loss", "seeds"] + [label for _, label in METRICS] + ["train s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, s in summary.items():
        lines.append("| " + " | ".join(
            [LOSS_NAMES[variant], str(len(s["seeds"]))] + [_fmt(s[key]) for key, _ in METRICS]
            + ["%.0f" % s["train_seconds"]["mean"]]) + " |")
    if len(runs) > len(summary):
        lines += ["", "Per seed (solver random_seed; same data):", "",
                  "| Loss | seed | iter | " + " | ".join(label for _, label in METRICS) + " |",
                  "|---|---|---|" + "---|" * len(METRICS)]
        for r in sorted(runs, key=lambda r: (VARIANTS.index(r["variant"]), r["seed"])):
            lines.append("| %s | %d | %d | %s |" % (
                r["variant"], r["seed"], r["final"]["iter"],
                " | ".join("%.4f" % r["final"][key] for key, _ in METRICS)))
    return "\n".join(lines)


def plot(runs, path, softmax_floor=None):
    """Training loss and per-snapshot test mAP of every run. softmax_floor: the lowest
    possible softmax-multilabel loss (mean log M of the training labels), drawn dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = dict(zip(VARIANTS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"),
                      strict=True))
    for variant in VARIANTS:
        rs = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
        for i, r in enumerate(rs):
            label = LOSS_NAMES[variant] if i == 0 else None
            it, loss = zip(*r["train_loss"], strict=True)
            ax_loss.plot(it, loss, color=colors[variant], alpha=0.8 if i == 0 else 0.35,
                         lw=1.2, label=label)
            snaps = r["snapshots"]
            ax_map.plot([s["iter"] for s in snaps], [s["mAP"] for s in snaps], "o-",
                        color=colors[variant], alpha=0.9 if i == 0 else 0.35, ms=3, label=label)
    if softmax_floor and any(r["variant"] == "softmax_multilabel" for r in runs):
        ax_loss.axhline(softmax_floor, color=colors["softmax_multilabel"], ls="--", lw=1,
                        label="softmax-multilabel floor: mean log M = %.3f" % softmax_floor)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss (Caffe log; scales differ between losses)")
    ax_loss.set_title("Training loss")
    ax_map.set_xlabel("iteration (snapshot)")
    ax_map.set_ylabel("test mAP")
    ax_map.set_title("Test mAP at each snapshot")
    ax_map.set_ylim(max(0.0, min([s["mAP"] for r in runs for s in r["snapshots"]] + [0.5]) - 0.02), 1.0)
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n_seeds = len({r["seed"] for r in runs})
    fig.suptitle("Multi-label digits, %d seed%s per loss (faint lines: further seeds)"
                 % (n_seeds, "" if n_seeds == 1 else "s"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
