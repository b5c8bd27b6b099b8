"""The transfer tables in README.md and examples/transfer/README.md, generated from results.json.

    .venv/bin/python examples/transfer/transfer_report.py --from output/transfer/results.json
        keep a fresh run_transfer.py (or `make transfer`) run: write its results to the committed
        examples/transfer/results.json (the learning-rate grid rides along from tuned.json), and
        regenerate both READMEs' tables
    .venv/bin/python examples/transfer/transfer_report.py --budget-from output/transfer_4000/results.json
        the same for a longer run (make transfer TRANSFER_ARGS="--checkpoints 500 1000 2000 4000 --out
        output/transfer_4000"): committed as examples/transfer/results_budget.json, in its own blocks
    .venv/bin/python examples/transfer/transfer_report.py            regenerate from the committed files
    .venv/bin/python examples/transfer/transfer_report.py --check    exit 1 if a README disagrees

The blocks and the check are :mod:`softmax_multilabel_layer.tools.docblocks`'s; tests/test_transfer_report.py
runs ``--check``. Every table says which command, machine, load and date produced it.
"""
import argparse
import json
import os
import sys

import numpy as np

from softmax_multilabel_layer.tools.docblocks import sync_blocks

import run_transfer
import transfer_nets
from transfer_nets import REPO

COMMITTED = os.path.join(REPO, "examples", "transfer", "results.json")
BUDGET = os.path.join(REPO, "examples", "transfer", "results_budget.json")
GENERATOR = "examples/transfer/transfer_report.py"
SOURCE = "examples/transfer/results.json"
BUDGET_SOURCE = "examples/transfer/results_budget.json"


def committed_results(results):
    """The results to commit: file paths made relative to the repository (the runs carry none)."""
    out = json.loads(json.dumps(results))
    for key in ("h5_file", "list_file"):
        if key in out.get("data", {}):
            out["data"][key] = os.path.relpath(out["data"][key], REPO)
    if "tuned" in out.get("settings", {}):
        out["settings"]["tuned"] = os.path.relpath(out["settings"]["tuned"], REPO)
    return out


def measured(results):
    """Where the numbers come from: command, machine, load, date, time."""
    load = results["load_average"]
    reused = sum(1 for r in results["runs"] if r.get("reused"))
    trained = sum(r.get("train_seconds") or 0.0 for r in results["runs"])
    return ("`%s`: %d pretraining runs (%s), seeds %s, snapshots at %s iterations; %s, %s; `caffe train` time "
            "%.0f s summed over the runs' logs; this invocation (%d runs reused from earlier ones, evaluated "
            "again) %.0f s wall clock at load average %.1f to %.1f."
            % (results["command"], len(results["runs"]), ", ".join(results["conditions"]) + " tags",
               ", ".join(map(str, results["seeds"])), ", ".join(map(str, results["checkpoints"])),
               results.get("machine", "?"), results.get("date", "?"), trained, reused,
               results["seconds"]["total"], load["start"][0], load["end"][0]))


def summary_table(results):
    """README.md's table: the end of the runs, a column pair per condition."""
    top = str(max(results["shots"]))
    low = str(min(results["shots"]))
    conds = results["conditions"]
    head = ["pretraining loss", "lr"] + ["%s: probe %s / %s-shot | %s: tag mAP" % (c, low, top, c) for c in conds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (2 + 2 * len(conds))]
    for loss in run_transfer.ordered(results["summary"]):
        by_cond = results["summary"][loss]
        cells = []
        for c in conds:
            if c not in by_cond:
                cells += ["", ""]
                continue
            s = by_cond[c]
            cells += ["%s / %s" % (run_transfer._pm(s["probe_accuracy"][low], 2), run_transfer._pm(
                s["probe_accuracy"][top], 2)), run_transfer._pm(s["tag_map"], 2)]
        lr = ", ".join(sorted({"%g" % by_cond[c]["base_lr"] for c in conds if c in by_cond}))
        name = transfer_nets.LOSS_NAMES[loss].replace(" (ours)", "")
        lines.append("| %s | %s | %s |" % (name, lr, " | ".join(cells)))
    base = "; ".join("%s %s / %s" % (name, run_transfer._pm(s[low], 2), run_transfer._pm(s[top], 2))
                     for name, s in results["baseline_summary"].items())
    lines.append("| *no pretraining: %s* | | %s |" % (base, " | ".join([""] * 2 * len(conds))))
    return "\n".join(lines)


def readme_block(results):
    return "\n".join([
        "At %d iterations; mean ± std over the seeds a row has (a value without ± is seed %d alone; %s):" % (
            results["checkpoints"][-1], results["seeds"][0], measured(results)), "",
        summary_table(results), "", run_transfer.verdict_lines(results), "", run_transfer.must_line(results)])


def detail_block(results):
    top = str(max(results["shots"]))
    low = str(min(results["shots"]))
    tuning = results.get("tuning") or {}
    return "\n".join([
        measured(results), "", "At %d iterations:" % results["checkpoints"][-1], "",
        run_transfer.markdown_tables(results), "",
        "**Verdict** (softmax 1/M against the best sigmoid-family loss by %s-shot probe accuracy; paired by seed):"
        % top, "", run_transfer.verdict_lines(results), "", run_transfer.must_line(results), "",
        "**Budget curves** (snapshots of the same runs; mean ± std over seeds; plot: "
        "`output/transfer/budget_curves.png`). Probe accuracy, %s-shot:" % top, "",
        run_transfer.curve_table(results, "probe_accuracy", top), "",
        "Probe accuracy, %s-shot:" % low, "", run_transfer.curve_table(results, "probe_accuracy", low), "",
        "Tag mAP (clean tags, held-out scans):", "", run_transfer.curve_table(results, "tag_map"), "",
        "**Learning-rate grid** (`run_transfer.py --tune`, validation mAP at %s iterations, the worst of seeds "
        "%s; chosen in bold; %s):" % (tuning.get("tune_iter", "?"),
                                      ", ".join(map(str, run_transfer.grid_seeds(tuning))), tuning_measured(tuning)),
        "",
        run_transfer.lr_table(results)])


def tuning_measured(tuning):
    """Which --tune made the grid: the command, machine, load, date and wall time of each (``sessions``: one per
    set of conditions tuned; a file from before sessions has one, at the top level)."""
    if not tuning:
        return "no grid"
    sessions = tuning.get("sessions") or [tuning]
    return "; ".join("%s`%s`, %s, load average %.1f to %.1f, %s, %.0f s" % (
        "%s tags: " % " and ".join(dict.fromkeys(c for _, c in s["pairs"])) if len(sessions) > 1 else "",
        s["command"], s.get("machine", "?"), s["load_average"]["start"][0], s["load_average"]["end"][0],
        s.get("date", "?"), s["seconds"]) for s in sessions)


def last_step(results):
    """Per condition and loss, how each yardstick moved from the second-last checkpoint to the last one, paired by
    seed (the same runs): {condition: {loss: {yardstick: {"mean_difference", "paired", "seed_std", "moved"}}}},
    "moved" +1 (rising) or -1 (falling) when every seed moved that way by more than the larger seed std of the
    two checkpoints, else 0 (level within the seed spread)."""
    its = [str(it) for it in results["checkpoints"][-2:]]
    top = str(max(results["shots"]))
    out: dict = {}
    for cond in results["conditions"]:
        for loss in run_transfer.ordered(results["summary"]):
            runs = [r for r in results["runs"] if r["loss"] == loss and r["condition"] == cond]
            if len(its) < 2 or not runs:
                continue
            for name, key in (("probe %s" % top, top), ("tag mAP", None)):
                at = [[r["curve"][it]["tag_map"] if key is None else r["curve"][it]["probe_accuracy"][key]
                       for r in runs] for it in its]
                d, spread, exceeds = run_transfer.paired(at[1], at[0])
                out.setdefault(cond, {}).setdefault(loss, {})[name] = {
                    "mean_difference": float(d.mean()), "paired": d.tolist(), "seed_std": spread,
                    "moved": int(np.sign(d.mean())) if exceeds else 0}
    return out


def last_step_lines(results):
    """One line per condition: which losses still rise (or fall) beyond the seed spread over the last budget step."""
    its = results["checkpoints"][-2:]
    lines = []
    for cond, by_loss in last_step(results).items():
        words = []
        for moved, say in ((1, "still rising beyond the seed spread"), (-1, "falling beyond the seed spread")):
            hits = ["%s (%s)" % (loss, ", ".join("%s %+.3f" % (k, v["mean_difference"]) for k, v in m.items()
                                                 if v["moved"] == moved))
                    for loss, m in by_loss.items() if any(v["moved"] == moved for v in m.values())]
            if hits:
                words.append("%s: %s" % (say, "; ".join(hits)))
        level = [loss for loss, m in by_loss.items() if not any(v["moved"] for v in m.values())]
        words.append("level within the seed spread: %s" % (", ".join(level) if level else "none"))
        lines.append("- **%s tags**, %d to %d iterations (paired by seed): %s." % (cond, its[0], its[1],
                                                                                  "; ".join(words)))
    return "\n".join(lines)


def budget_readme_block(budget):
    if budget is None:
        return "(no longer run committed: `transfer_report.py --budget-from`)"
    return "\n".join([
        "Every run %d iterations long, at the same rates (%s):" % (budget["checkpoints"][-1], measured(budget)),
        "",
        run_transfer.verdict_lines(budget), "", last_step_lines(budget)])


def budget_detail_block(budget):
    if budget is None:
        return "(no longer run committed: `transfer_report.py --budget-from`)"
    top = str(max(budget["shots"]))
    return "\n".join([
        measured(budget), "", "At %d iterations:" % budget["checkpoints"][-1], "", summary_table(budget), "",
        run_transfer.verdict_lines(budget), "", run_transfer.must_line(budget), "",
        "Over the last step of the budget:", "", last_step_lines(budget), "",
        "Probe accuracy, %s-shot, at every snapshot (mean ± std over seeds):" % top, "",
        run_transfer.curve_table(budget, "probe_accuracy", top), "",
        "Tag mAP at every snapshot:", "", run_transfer.curve_table(budget, "tag_map")])


BLOCKS = {"README.md": {"transfer-summary": readme_block},
          "examples/transfer/README.md": {"transfer-results": detail_block}}
BUDGET_BLOCKS = {"README.md": {"transfer-budget": budget_readme_block},
                 "examples/transfer/README.md": {"transfer-budget": budget_detail_block}}


def main(argv=None):
    # The same --from / --check surface as the digits and yeast generators, on purpose (one way to regenerate
    # every example's tables); the block replacement and the check are shared (tools/docblocks), not repeated.
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--from", dest="source", help="a run_transfer.py results.json to commit first")
    p.add_argument("--budget-from", dest="budget_source", help="a longer run's results.json (e.g. --checkpoints "
                   "500 1000 2000 4000) to commit as %s" % BUDGET_SOURCE)
    p.add_argument("--check", action="store_true", help="only check that the READMEs agree with the results")
    args = p.parse_args(argv)
    for source, committed in ((args.source, COMMITTED), (args.budget_source, BUDGET)):
        if source:
            run_transfer.write_json(committed, committed_results(run_transfer.read_json(source)))
    results = run_transfer.read_json(COMMITTED)
    budget = run_transfer.read_json(BUDGET) if os.path.exists(BUDGET) else None
    status = 0
    for by_path, data, source in ((BLOCKS, results, SOURCE), (BUDGET_BLOCKS, budget, BUDGET_SOURCE)):
        blocks = {path: {name: make(data) for name, make in by_name.items()} for path, by_name in by_path.items()}
        status = max(status, sync_blocks(blocks, GENERATOR, source, check=args.check, root=REPO))
    return status


if __name__ == "__main__":
    sys.exit(main())
