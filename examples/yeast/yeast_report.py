"""The yeast results tables in README.md and examples/yeast/README.md, generated from results.json.

    .venv/bin/python examples/yeast/yeast_report.py --from output/yeast/results.json
        keep a fresh run_yeast.py (or `make demo`) run: write its results (without the per-fold
        hyper-parameters, which are examples/yeast/hparams.json) to the committed
        examples/yeast/results.json, and regenerate both READMEs' tables
    .venv/bin/python examples/yeast/yeast_report.py            regenerate from the committed file
    .venv/bin/python examples/yeast/yeast_report.py --check    exit 1 if a README disagrees

Each table sits between a ``<!-- BEGIN generated: NAME -->`` and an ``<!-- END generated: NAME -->``
line, as the digits demo's (examples/multilabel_digits/readme_tables.py), written by
``softmax_multilabel_layer.tools.docblocks``; everything else in the READMEs is left alone.
tests/test_yeast_peers.py runs ``--check``.
"""
import argparse
import json
import os
import sys
from typing import Any

from softmax_multilabel_layer.tools.docblocks import sync_blocks, write_atomic

import run_yeast
import yeast_peers
from yeast_train import REPO

HERE = os.path.dirname(os.path.abspath(__file__))

COMMITTED = os.path.join(HERE, "results.json")
README = os.path.join(REPO, "README.md")
YEAST_README = os.path.join(HERE, "README.md")
GENERATOR = "examples/yeast/yeast_report.py"


def committed_results(results: dict[str, Any]) -> dict[str, Any]:
    """The part of a run_yeast.py results dict that is committed: all but the per-fold hyper-parameters."""
    out = dict(results)
    if isinstance(out.get("hyperparameters"), dict):
        out["hyperparameters"] = {k: v for k, v in out["hyperparameters"].items() if k != "per_variant_fold"}
    return out


def measured(results: dict[str, Any]) -> str:
    s, load = results["seconds"], results["load_average"]
    return ("Measured by `%s`: %.0f s wall clock (our losses %.0f s, scikit-learn baselines %.0f s, peers %.0f s) "
            "on %s CPUs shared with other jobs, load average %.1f/%.1f/%.1f at the start (1, 5, 15 min) and "
            "%.1f/%.1f/%.1f at the end." % (results["command"], s["total"], s["ours"], s["baselines"],
                                            s.get("peers", 0.0), results["cpu_count"], *load["start"], *load["end"]))


def compact_table(methods: dict[str, dict[str, Any]]) -> str:
    """Mean ± std, 3 decimals (coverage 2), one row per method that has every metric."""
    rows = ["| method | source | " + " | ".join(run_yeast.METRIC_TITLES[m] for m in run_yeast.METRICS) + " |",
            "|---|---|" + "---:|" * len(run_yeast.METRICS)]
    for name, e in methods.items():
        if not all(m in e for m in run_yeast.METRICS):
            continue
        cells = ["%.*f ± %.*f" % (d, e[m]["mean"], d, e[m]["std"])
                 for m, d in ((m, 2 if m == "coverage" else 3) for m in run_yeast.METRICS)]
        label = "%s %s" % (e["package"], e["version"]) if e["source"] == "peer" else e["source"]
        rows.append("| %s | %s | %s |" % (name, label, " | ".join(cells)))
    return "\n".join(rows)


def win_counts(results: dict[str, Any]) -> str:
    """Only the win-count summary of yeast_peers.comparison_markdown (the top README's short form)."""
    text = yeast_peers.comparison_markdown(results)
    start = text.index("Win counts over")
    return text[start:text.index("\n\nPeers (package")]


def readme_block(results: dict[str, Any]) -> str:
    """The top README's yeast block: the compact table, the win counts and how it was measured."""
    return "\n".join([compact_table(results["methods"]), "", "Mean ± sample std over the %d folds. Our losses "
                      "against the peers:" % results["folds"], "", win_counts(results), "",
                      "Per metric and peer: `examples/yeast/README.md`. " + measured(results)])


def yeast_block(results: dict[str, Any]) -> str:
    """examples/yeast/README.md's block: the full table, the comparison with the peers, how it was measured."""
    return "\n".join([run_yeast.markdown_table(results["methods"]), "", measured(results), "",
                      yeast_peers.comparison_markdown(results)])


BLOCKS = {README: ("yeast-results", readme_block), YEAST_README: ("yeast-results-detail", yeast_block)}


def expected_blocks(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{README path: {block name: body made from ``results``}}."""
    return {path: {name: make(results)} for path, (name, make) in BLOCKS.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--from", dest="source", help="a run_yeast.py results.json to commit first")
    p.add_argument("--check", action="store_true", help="only check that the READMEs agree with the results")
    args = p.parse_args(argv)
    if args.source:
        with open(args.source) as f:
            fresh = committed_results(json.load(f))
        write_atomic(COMMITTED, json.dumps(fresh, indent=1) + "\n")   # key order kept: the table order
    with open(COMMITTED) as f:
        results = json.load(f)
    return sync_blocks(expected_blocks(results), GENERATOR, "examples/yeast/results.json", check=args.check,
                       root=REPO)


if __name__ == "__main__":
    sys.exit(main())
