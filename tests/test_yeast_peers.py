"""The yeast benchmark's peers (examples/yeast/yeast_peers.py) on a small subset, the win counts of our losses
against them on a hand-made example, and the generated README tables against the committed results file."""
import copy
import json
import os
import sys
from importlib import metadata

import numpy as np
import pytest
from sklearn.model_selection import KFold

from softmax_multilabel_layer.evaluation import metrics as M

YEAST = os.path.join(os.path.dirname(__file__), "..", "examples", "yeast")
sys.path.insert(0, YEAST)
import run_yeast  # noqa: E402
import yeast_data  # noqa: E402
import yeast_peers as P  # noqa: E402
import yeast_report  # noqa: E402

SEED = 28


@pytest.fixture(scope="module")
def subset():
    """300 yeast rows drawn with seed SEED and 2 folds of KFold(2, shuffle=True, random_state=SEED)."""
    print("yeast subset and folds: seed %d" % SEED)
    X, Y = yeast_data.load_yeast()
    rows = np.sort(np.random.default_rng(SEED).choice(len(X), 300, replace=False))
    X, Y = X[rows], Y[rows]
    folds = list(enumerate(KFold(2, shuffle=True, random_state=SEED).split(X)))
    for _, (train, _test) in folds:                  # every label seen and missed in each training half
        assert (Y[train].sum(0) > 0).all() and (Y[train].sum(0) < len(train)).all()
    return X, Y, folds


@pytest.fixture(scope="module")
def peer_run(subset):
    X, Y, folds = subset
    return P.run_peers(X, Y, folds, say=lambda _: None, jobs=2)


def test_every_peer_gives_a_row_with_package_version_and_informative_scores(peer_run):
    per_fold, seconds = peer_run
    assert list(per_fold) == list(P.PEER_NAMES) and len(P.PEER_NAMES) >= 3
    assert {P.peer_by_name(n).distribution for n in P.PEER_NAMES} == {"scikit-multilearn-ng", "scikit-learn"}
    for name, folds_m in per_fold.items():
        row = P.peer_row(name, folds_m, seconds[name])
        assert row["source"] == "peer" and row["version"] == metadata.version(row["package"]), name
        assert len(folds_m) == 2 and seconds[name] > 0
        for m in ("hamming_loss", "one_error", "coverage", "ranking_loss", "average_precision", "macro_map"):
            assert np.isfinite(row[m]["mean"]) and row[m]["std"] >= 0, (name, m)
        # better than a random ranking (ranking loss 1/2) on 150 training rows; ML-kNN, the chains and the
        # forest clearly so (MLARAM, an ART network, ranks poorly: 0.49 here, 0.39 on the full folds)
        assert row["ranking_loss"]["mean"] < (0.5 if name.startswith("MLARAM") else 0.3), (name, row)
        assert 0 < row["hamming_loss"]["mean"] < 0.35, name


def test_mlknn_row_equals_the_library_run_by_hand(subset, peer_run):
    """Fold 1 of ML-kNN rebuilt independently: numpy standardization, MLkNN(k=10, s=1), the package's metrics."""
    from skmultilearn.adapt import MLkNN
    X, Y, folds = subset
    _, (train, test) = folds[1]
    mean, std = X[train].mean(0), X[train].std(0)
    Xtr, Xte = (((X[rows] - mean) / std).astype(np.float32) for rows in (train, test))
    model = MLkNN(k=10, s=1.0).fit(Xtr, Y[train])
    scores, predicted = model.predict_proba(Xte).toarray(), model.predict(Xte).toarray()
    got = peer_run[0][P.PEER_NAMES[0]][1]
    assert P.PEER_NAMES[0].startswith("ML-kNN")
    expect = {"hamming_loss": M.hamming_loss(Y[test], predicted), "one_error": M.one_error(Y[test], scores),
              "coverage": M.coverage(Y[test], scores), "ranking_loss": M.ranking_loss(Y[test], scores),
              "average_precision": M.label_ranking_average_precision(Y[test], scores)}
    for m, v in expect.items():
        assert got[m] == pytest.approx(v, rel=1e-12), m


def test_peers_are_deterministic_and_fold_ordered_with_one_or_two_threads(subset, peer_run):
    X, Y, folds = subset
    again, _ = P.run_peers(X, Y, folds[::-1], say=lambda _: None, jobs=1)
    for name in P.PEER_NAMES:
        assert again[name] == peer_run[0][name][::-1], name


def test_minmax_scale_uses_the_training_range_only():
    tr = np.array([[0.0, 5.0, 1.0], [2.0, 7.0, 1.0], [1.0, 6.0, 1.0]])
    te = np.array([[3.0, 6.5, 4.0], [-1.0, 5.0, 1.0]])
    a, b = P.minmax_scale(tr, te)
    np.testing.assert_allclose(a, np.array([[0, 0, 0], [1, 1, 0], [0.5, 0.5, 0]]))
    np.testing.assert_allclose(b, np.array([[1, 0.75, 1], [0, 0, 0]]))     # clipped to the training range


def test_unknown_peer_is_named():
    with pytest.raises(ValueError, match=r"unknown yeast peer 'kNN', expected one of ML-kNN"):
        P.peer_by_name("kNN")


# --- the win counts on a hand-made example ---------------------------------------------------------------

def hand_made():
    ours = {"hamming_loss": [0.10, 0.20, 0.30], "one_error": [0.2, 0.2, 0.2], "coverage": [7.0, 7.5, 8.0],
            "ranking_loss": [0.15, 0.16, 0.17], "average_precision": [0.80, 0.76, 0.75]}
    peer = {"hamming_loss": [0.20, 0.20, 0.10], "one_error": [0.3, 0.3, 0.3], "coverage": [6.0, 6.2, 6.1],
            "ranking_loss": [0.20, 0.21, 0.22], "average_precision": [0.70, 0.70, 0.79]}
    return {name: [{m: v[i] for m, v in d.items()} for i in range(3)] for name, d in (("A", ours), ("Q", peer))}


def test_compare_on_a_hand_made_example():
    rows = {r["metric"]: r for r in P.compare(hand_made(), ["A"], ["Q"])}
    assert list(rows) == list(P.ZZ_METRICS)
    got = {m: (r["wins"], r["losses"], r["ties"], r["exceeds_sd"], r["ours_better"]) for m, r in rows.items()}
    assert got == {
        "hamming_loss": (1, 1, 1, False, False),       # Δ = 0.2 - 1/6 = +0.033 < sd 0.1 (ours)
        "one_error": (3, 0, 0, True, True),            # Δ = -0.1, both constant
        "coverage": (0, 3, 0, True, False),            # Δ = +1.4 > sd 0.5 (ours)
        "ranking_loss": (3, 0, 0, True, True),         # Δ = -0.05 > sd 0.01
        "average_precision": (2, 1, 0, False, True),   # higher is better; Δ = +0.04 < sd 0.052 (the peer's)
    }
    assert rows["hamming_loss"]["mean_diff"] == pytest.approx(0.2 - 0.5 / 3)
    assert rows["hamming_loss"]["fold_sd"] == pytest.approx(0.1)                  # sample std (ddof 1)
    assert rows["average_precision"]["fold_sd"] == pytest.approx(0.09 / 3 ** 0.5)  # std of 0.70, 0.70, 0.79
    assert rows["coverage"]["mean_diff"] == pytest.approx(1.4)


def test_comparison_markdown_on_the_hand_made_example():
    methods = {"A": {"source": "ours"}, "B": {"source": "baseline"},
               "Q": {"source": "peer", "package": "pkg", "version": "1.2", "model": "Q()", "features": "raw"}}
    per_fold = dict(hand_made(), B=hand_made()["Q"])
    text = P.comparison_markdown({"methods": methods, "per_fold": per_fold})
    assert "| A | Q | 1–1 (1 tied), Δ +0.0333 | 3–0, Δ -0.1000 **> sd** | 0–3, Δ +1.400 **> sd** | " \
           "3–0, Δ -0.0500 **> sd** | 2–1, Δ +0.0400 |" in text
    assert "| A | 9 | 5 | 1 | 2 of 5 | 1 of 5 |" in text          # folds won, lost, tied; > sd for, against
    assert "- Q: pkg 1.2; `Q()`; raw." in text
    assert "| B |" not in text                                  # a baseline is not compared
    assert P.comparison_markdown({"methods": {"A": {"source": "ours"}}, "per_fold": per_fold}) == ""


def test_compare_refuses_unequal_fold_counts():
    per_fold = hand_made()
    per_fold["Q"] = per_fold["Q"][:2]
    with pytest.raises(ValueError, match="A has 3 folds, Q has 2"):
        P.compare(per_fold, ["A"], ["Q"])


# --- the generated README tables and the committed results file --------------------------------------------

def committed():
    with open(yeast_report.COMMITTED) as f:
        return json.load(f)


def test_readmes_agree_with_the_committed_results(capsys):
    assert yeast_report.main(["--check"]) == 0, capsys.readouterr().err


def test_committed_results_hold_the_peers_and_their_comparison():
    results = committed()
    peers = P.sources(results["methods"], "peer")
    assert peers == list(P.PEER_NAMES)
    for name in peers:
        e = results["methods"][name]
        assert e["package"] in ("scikit-multilearn-ng", "scikit-learn") and e["version"]
        assert len(results["per_fold"][name]) == results["folds"] == 10
    ours = P.sources(results["methods"], "ours")
    assert results["comparison"] == P.compare(results["per_fold"], ours, peers)


def test_generated_blocks_follow_the_per_fold_results():
    results = committed()
    block, detail = yeast_report.readme_block(results), yeast_report.yeast_block(results)
    for name, e in results["methods"].items():
        if "ranking_loss" in e:
            assert "%.3f ± %.3f" % (e["ranking_loss"]["mean"], e["ranking_loss"]["std"]) in block, name
            assert name in detail
    # a different per-fold value changes the win counts shown
    changed = copy.deepcopy(results)
    ours, peer = P.sources(results["methods"], "ours")[0], P.sources(results["methods"], "peer")[0]
    changed["per_fold"][ours][0]["ranking_loss"] = changed["per_fold"][peer][0]["ranking_loss"] + 1
    assert yeast_report.yeast_block(changed) != detail and yeast_report.readme_block(changed) != block


def test_plot_shows_peer_rows(tmp_path):
    methods = {"ours: x": {"source": "ours", "ranking_loss": {"mean": 0.16, "std": 0.01},
                           "average_precision": {"mean": 0.77, "std": 0.01}},
               "p": {"source": "peer", "ranking_loss": {"mean": 0.17, "std": 0.01},
                     "average_precision": {"mean": 0.76, "std": 0.01}}}
    assert os.path.getsize(run_yeast.plot(methods, str(tmp_path / "r.png"))) > 1000
