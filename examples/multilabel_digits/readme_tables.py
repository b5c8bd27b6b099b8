"""The demo's results tables in README.md and examples/multilabel_digits/README.md, generated from results.

    .venv/bin/python examples/multilabel_digits/readme_tables.py --from output/digits/results.json
        keep a fresh `make demo` run: write its results (without local paths and loss curves) to the
        committed examples/multilabel_digits/results.json, and regenerate both READMEs' tables
    .venv/bin/python examples/multilabel_digits/readme_tables.py            regenerate from the committed file
    .venv/bin/python examples/multilabel_digits/readme_tables.py --check    exit 1 if a README disagrees
    .venv/bin/python examples/multilabel_digits/readme_tables.py --add output/digits_new/results.json
        add the variants of a run_demo.py --variants ... run (same data, solver and seeds) to the committed
        results; the tables then say which command measured which rows

Each table sits between a ``<!-- BEGIN generated: NAME -->`` and an ``<!-- END generated: NAME -->``
line; everything else in the READMEs is left alone. tests/test_readme_results.py runs ``--check``.
"""
import argparse
import json
import os
import sys

from softmax_multilabel_layer.tools.docblocks import sync_blocks

import digits_report  # noqa: E402
from digits_train import LOSS_NAMES, REPO, VARIANTS  # noqa: E402

COMMITTED = os.path.join(REPO, "examples", "multilabel_digits", "results.json")
README = os.path.join(REPO, "README.md")
DIGITS_README = os.path.join(REPO, "examples", "multilabel_digits", "README.md")
# Loss names in the top README; a variant missing here is shown with its digits_train.LOSS_NAMES name.
README_NAMES = {"softmax_multilabel": "`SoftmaxMultilabelLossLayer` (1/M targets)",
                "sigmoid_native": "Caffe's `SigmoidCrossEntropyLoss`",
                "sigmoid_focal": "`SigmoidMultilabelLossLayer`, focal γ = 2",
                "sigmoid_asl": "`SigmoidMultilabelLossLayer`, ASL γ₋ = 4, γ₊ = 0, clip 0.05",
                "zlpr": "`ZLPRLossLayer` (ZLPR)",
                "two_way": "`TwoWayLossLayer`, two-way, Tp = 4, Tn = 1"}
RUN_KEYS = ("variant", "seed", "train_seconds")
FINAL_DROP = ("caffemodel", "per_class_ap")


def committed_results(results):
    """The part of a run_demo.py results dict that is committed: no local paths, no loss curves."""
    data = {k: v for k, v in results["data"].items() if k != "splits"}
    data["splits"] = {name: {k: v for k, v in split.items() if k not in ("list_file", "h5_file")}
                      for name, split in results["data"]["splits"].items()}
    runs = [dict({k: r[k] for k in RUN_KEYS}, final={k: v for k, v in r["final"].items() if k not in FINAL_DROP})
            for r in results["runs"]]
    keep = ("command", "solver_overrides", "summary", "softmax_loss_floor", "seconds", "machine", "additions")
    return dict({k: results[k] for k in keep if k in results}, data=data, runs=runs)


def added_results(committed, results):
    """``committed`` with the runs and summaries of ``results`` (a run_demo.py --variants run) added.

    The two runs must share the data and the solver overrides. The added run's command, time, machine and
    variants are kept under "additions"; a variant in both is replaced by the new run's.
    """
    fresh = committed_results(results)
    for key in ("data", "solver_overrides", "softmax_loss_floor"):
        if fresh[key] != committed[key]:
            raise SystemExit("--add: the run's %s differ from the committed results'" % key)
    variants = sorted(fresh["summary"])
    merged = dict(committed)
    merged["runs"] = [r for r in committed["runs"] if r["variant"] not in variants] + fresh["runs"]
    merged["summary"] = dict({k: v for k, v in committed["summary"].items() if k not in variants},
                             **fresh["summary"])
    additions = [a for a in committed.get("additions", []) if not set(a["variants"]) & set(variants)]
    merged["additions"] = additions + [{"command": fresh["command"], "variants": variants,
                                        "seconds": fresh["seconds"], "machine": fresh.get("machine")}]
    return merged


def _seeds(results):
    return sorted({r["seed"] for r in results["runs"]})


def _measured(results):
    added = [v for a in results.get("additions", []) for v in a["variants"]]
    runs = [r for r in results["runs"] if r["variant"] not in added]
    text = "Measured by %s" % _one_run(results["command"], results, len(runs), len(results["summary"]) - len(added))
    for a in results.get("additions", []):
        text += " The rows %s were added by %s" % (", ".join("`%s`" % v for v in a["variants"]), _one_run(
            a["command"], dict(results, seconds=a["seconds"], machine=a["machine"]),
            sum(r["variant"] in a["variants"] for r in results["runs"]), len(a["variants"])))
    return text


def _one_run(command, results, n_runs, n_losses):
    seconds, machine = results["seconds"], results.get("machine") or {}
    iters = results["solver_overrides"].get("max_iter", 3000)
    load = machine.get("loadavg_1_5_15")
    text = ("`%s`: %d runs (%d losses x solver seeds %s) of %s iterations, %.0f s wall clock "
            "(%.1f min) on %s cores of an %s, load average %s at the start (1, 5, 15 min) and %s at the end."
            % (command, n_runs, n_losses,
               ", ".join(map(str, _seeds(results))), "{:,}".format(iters), seconds["total"], seconds["total"] / 60,
               machine.get("cores", "?"), machine.get("cpu", "unknown CPU"),
               load and "%.1f/%.1f/%.1f" % tuple(load), machine.get("loadavg_at_end") and
               "%.1f/%.1f/%.1f" % tuple(machine["loadavg_at_end"])))
    if "cpu" in seconds:
        text += (" CPU time %.0f s: about %.1f min on %s otherwise idle cores (CPU time / cores)."
                 % (seconds["cpu"], seconds["cpu"] / (machine.get("cores") or 1) / 60, machine.get("cores", "?")))
    return text


def readme_block(results):
    """The top README's table: mean over seeds, 3 decimals, and how it was measured."""
    lines = ["| loss | test mAP | precision@M | exact-set accuracy |", "|---|---|---|---|"]
    for variant, s in _ordered(results["summary"]):
        lines.append("| %s | %.3f | %.3f | %.3f |" % (README_NAMES.get(variant, LOSS_NAMES.get(variant, variant)),
                                                    s["mAP"]["mean"], s["precision_at_m"]["mean"],
                                                    s["exact_set_accuracy"]["mean"]))
    lines += ["", "Mean over solver seeds %s. %s The softmax loss cannot go below mean log M = %.3f on this "
              "training set (see [its floor](docs/losses.md#the-loss-floor))."
              % (", ".join(map(str, _seeds(results))), _measured(results), results["softmax_loss_floor"])]
    return "\n".join(lines)


def digits_block(results):
    """The digits README's table: mean ± std (min–max) and every seed (digits_report's results.md table)."""
    return "\n".join([digits_report.markdown_table(dict(_ordered(results["summary"])), results["runs"]), "",
                      _measured(results)])


def _ordered(summary):
    known = [v for v in VARIANTS if v in summary]
    return [(v, summary[v]) for v in known + sorted(set(summary) - set(known))]


BLOCKS = {README: ("digits-results", readme_block), DIGITS_README: ("digits-results-detail", digits_block)}


def expected_blocks(results):
    """{README path: {block name: body made from ``results``}}."""
    return {path: {name: make(results)} for path, (name, make) in BLOCKS.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", help="a run_demo.py results.json to commit first")
    p.add_argument("--add", help="a run_demo.py --variants results.json whose variants to add to the committed file")
    p.add_argument("--check", action="store_true", help="only check that the READMEs agree with the results")
    args = p.parse_args(argv)
    if args.add:
        with open(COMMITTED) as f:
            committed = json.load(f)
        with open(args.add) as f:
            merged = added_results(committed, json.load(f))
        with open(COMMITTED, "w") as f:
            json.dump(merged, f, indent=1, sort_keys=True)
            f.write("\n")
    if args.source:
        with open(args.source) as f:
            fresh = committed_results(json.load(f))
        with open(COMMITTED, "w") as f:
            json.dump(fresh, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(COMMITTED) as f:
        results = json.load(f)
    return sync_blocks(expected_blocks(results), "examples/multilabel_digits/readme_tables.py", "results.json",
                       check=args.check, root=REPO)


if __name__ == "__main__":
    sys.exit(main())
