"""The transfer tables in README.md and examples/transfer/README.md, generated from results.json.

    .venv/bin/python examples/transfer/transfer_report.py --from output/transfer/results.json
        keep a fresh run_transfer.py (or `make transfer`) run: write its results to the committed
        examples/transfer/results.json (the learning-rate grid rides along from tuned.json), and
        regenerate both READMEs' tables
    .venv/bin/python examples/transfer/transfer_report.py            regenerate from the committed file
    .venv/bin/python examples/transfer/transfer_report.py --check    exit 1 if a README disagrees

The blocks and the check are :mod:`softmax_multilabel_layer.tools.docblocks`'s; tests/test_transfer_report.py
runs ``--check``. Every table says which command, machine, load and date produced it.
"""
import argparse
import json
import os
import sys

from softmax_multilabel_layer.tools.docblocks import sync_blocks

import run_transfer
import transfer_nets
from transfer_nets import REPO

COMMITTED = os.path.join(REPO, "examples", "transfer", "results.json")
GENERATOR = "examples/transfer/transfer_report.py"
SOURCE = "examples/transfer/results.json"


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
        "%s; chosen in bold; %s):" % (
            (results.get("tuning") or {}).get("tune_iter", "?"), tuning_seeds(results.get("tuning") or {}),
            tuning_measured(results.get("tuning"))), "",
        run_transfer.lr_table(results)])


def tuning_seeds(tuning):
    """The grid's seeds ("seeds"; a grid of one seed before the worst-seed rule recorded "seed")."""
    return ", ".join(map(str, tuning.get("seeds", [tuning.get("seed", "?")])))


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


BLOCKS = {"README.md": {"transfer-summary": readme_block},
          "examples/transfer/README.md": {"transfer-results": detail_block}}


def main(argv=None):
    # The same --from / --check surface as the digits and yeast generators, on purpose (one way to regenerate
    # every example's tables); the block replacement and the check are shared (tools/docblocks), not repeated.
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--from", dest="source", help="a run_transfer.py results.json to commit first")
    p.add_argument("--check", action="store_true", help="only check that the READMEs agree with the results")
    args = p.parse_args(argv)
    if args.source:
        with open(args.source) as f:
            fresh = committed_results(json.load(f))
        run_transfer.write_json(COMMITTED, fresh)
    with open(COMMITTED) as f:
        results = json.load(f)
    blocks = {path: {name: make(results) for name, make in by_name.items()} for path, by_name in BLOCKS.items()}
    return sync_blocks(blocks, GENERATOR, SOURCE, check=args.check, root=REPO)


if __name__ == "__main__":
    sys.exit(main())
