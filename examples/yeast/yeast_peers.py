"""Live peers on the yeast folds: multi-label learners of other libraries, and our losses against them.

Each peer is trained on the same 10 outer folds as our losses (``yeast_data.outer_folds``) with
features scaled on the training fold only, and scored by the same code as every row of the
benchmark (``yeast_eval.fold_metrics``: the package's ``softmax_multilabel_layer.evaluation.metrics``).
The recipes are the libraries' standard ones:

- ML-kNN (Zhang & Zhou, Pattern Recognition 2007): ``skmultilearn.adapt.MLkNN(k=10, s=1.0)``, the
  paper's settings, on the standardized features (as every method here; yeast's raw features are
  already of nearly equal spread, so the Euclidean neighbours barely change). Scores: its posterior
  P(label | neighbour counts); label set: its own ``predict`` (posterior >= 1/2).
- An ensemble of 10 classifier chains (Read et al. 2011, as scikit-learn's yeast example builds it):
  ``ClassifierChain(LogisticRegression(max_iter=1000), order="random", random_state=i)`` for
  i = 0..9, probabilities averaged; label set: mean probability >= 0.5.
- A random forest, scikit-learn's native multi-output trees: ``RandomForestClassifier(
  n_estimators=100, random_state=0)``; scores: the per-label probability of class 1; label set:
  its own ``predict``.
- MLARAM (Benites & Sapozhnikova 2015), a fuzzy-ART network: ``skmultilearn.adapt.MLARAM()`` with
  its defaults (vigilance 0.9, threshold 0.02); inputs min-max scaled to [0, 1] with the training
  fold's per-feature range (test rows clipped to it), because ARAM's complement coding needs [0, 1]
  and MLARAM would otherwise rescale each matrix it is given by that matrix's own global range.

skmultilearn's BRkNNaClassifier is not a peer here: it has no scores (``predict`` only), so its
ranking metrics would be those of a 0/1 ranking with ties.

``compare`` counts, for each of our losses against each peer and each of Zhang & Zhou's five
metrics, the folds where ours is better, worse or equal, and whether the difference of the means
exceeds the fold standard deviation (the larger of the two methods' sample std over the folds,
the "±" of the results table).
"""
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

import yeast_data
import yeast_eval

ZZ_METRICS = ("hamming_loss", "one_error", "coverage", "ranking_loss", "average_precision")
ZZ_TITLES = {"hamming_loss": "Hamming loss ↓", "one_error": "one-error ↓", "coverage": "coverage ↓",
             "ranking_loss": "ranking loss ↓", "average_precision": "average precision ↑"}
ECC_CHAINS = 10
FOREST_SEED = 0

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def dense(a: Any) -> np.ndarray:
    """A scipy sparse matrix or an array -> a numpy array."""
    return np.asarray(a.toarray() if hasattr(a, "toarray") else a)


def minmax_scale(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale to [0, 1] with the training rows' per-feature min and max; test rows are clipped to [0, 1].

    A constant training feature maps to 0.
    """
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (X_train - lo) / span, np.clip((X_test - lo) / span, 0.0, 1.0)


def fit_mlknn(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skmultilearn.adapt import MLkNN
    model = MLkNN(k=10, s=1.0).fit(X_train, Y_train)
    return dense(model.predict_proba(X_test)), dense(model.predict(X_test))


def fit_ecc(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import ClassifierChain
    probs = np.mean([ClassifierChain(LogisticRegression(max_iter=1000), order="random", random_state=seed)
                     .fit(X_train, Y_train).predict_proba(X_test) for seed in range(ECC_CHAINS)], axis=0)
    return probs, (probs >= 0.5).astype(np.uint8)


def fit_forest(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier
    model = RandomForestClassifier(n_estimators=100, random_state=FOREST_SEED).fit(X_train, Y_train)
    # one (N, n_classes) array per label; a label constant in the training fold has a single class
    probs = np.stack([p[:, list(c).index(1)] if 1 in c else np.zeros(len(X_test))
                      for p, c in zip(model.predict_proba(X_test), model.classes_, strict=True)], axis=1)
    return probs, dense(model.predict(X_test))


def fit_mlaram(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skmultilearn.adapt import MLARAM
    a, b = minmax_scale(X_train.astype(np.float64), X_test.astype(np.float64))
    model = MLARAM().fit(a, Y_train)
    return dense(model.predict_proba(b)), dense(model.predict(b))


@dataclass(frozen=True)
class Peer:
    """One peer: its row name, the distribution it comes from, its recipe and how it is fitted."""
    name: str
    distribution: str
    model: str
    features: str
    seeds: str
    fit_predict: FitPredict


STANDARDIZED = "standardized with the training fold's mean and std"
PEERS = (
    Peer("ML-kNN, k 10, s 1 (skmultilearn)", "scikit-multilearn-ng", "skmultilearn.adapt.MLkNN(k=10, s=1.0)",
         STANDARDIZED, "none (deterministic)", fit_mlknn),
    Peer("ensemble of 10 classifier chains (sklearn)", "scikit-learn",
         "mean of ClassifierChain(LogisticRegression(max_iter=1000), order='random', random_state=i), "
         "i = 0..9; label set: mean probability >= 0.5", STANDARDIZED, "chain orders 0..9", fit_ecc),
    Peer("random forest, 100 trees (sklearn)", "scikit-learn",
         "RandomForestClassifier(n_estimators=100, random_state=0), multi-output", STANDARDIZED,
         "random_state %d" % FOREST_SEED, fit_forest),
    Peer("MLARAM (skmultilearn)", "scikit-multilearn-ng", "skmultilearn.adapt.MLARAM() (vigilance 0.9, "
         "threshold 0.02)", STANDARDIZED + ", then min-max scaled to [0, 1] with the training fold's range "
         "(test rows clipped)", "none (deterministic)", fit_mlaram),
)
PEER_NAMES = tuple(p.name for p in PEERS)


def peer_by_name(name: str) -> Peer:
    for p in PEERS:
        if p.name == name:
            return p
    raise ValueError("unknown yeast peer %r, expected one of %s" % (name, ", ".join(PEER_NAMES)))


def run_peers(X: np.ndarray, Y: np.ndarray, folds: Iterable[tuple[int, tuple[np.ndarray, np.ndarray]]],
              say: Callable[[str], None] = print, names: Sequence[str] = PEER_NAMES, jobs: int = 1,
              ) -> tuple[dict[str, list[dict[str, float]]], dict[str, float]]:
    """Fit and score every peer on every fold -> ({name: [fold metrics, in fold order]}, {name: seconds}).

    Args:
        X: (N, 103) raw features; Y: (N, L) 0/1 labels.
        folds: (k, (train_index, test_index)) pairs.
        names: which peers (default: all of PEER_NAMES).
        jobs: folds run at a time (threads), each with one BLAS / OpenMP thread.

    The seconds of a peer are the wall time of its fits summed over the folds.
    """
    import sklearn.ensemble  # noqa: F401  (loaded before the thread limit below, so that it applies to
    import sklearn.linear_model  # noqa: F401  the BLAS and OpenMP libraries they bring)
    import skmultilearn.adapt  # noqa: F401
    from threadpoolctl import threadpool_limits

    peers = [peer_by_name(n) for n in names]
    folds = list(folds)

    def one_fold(fold: tuple[int, tuple[np.ndarray, np.ndarray]]) -> list[tuple[dict[str, float], float]]:
        k, (train, test) = fold
        Xtr, Xte = yeast_data.standardize(X[train], X[test])
        out = []
        for p in peers:
            start = time.time()
            scores, predicted = p.fit_predict(Xtr, Y[train], Xte)
            out.append((yeast_eval.fold_metrics(Y[test], scores, predicted), time.time() - start))
        say("  peers fold %d done" % k)
        return out

    with threadpool_limits(1), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one_fold, folds))
    per_fold = {p.name: [r[i][0] for r in results] for i, p in enumerate(peers)}
    seconds = {p.name: float(sum(r[i][1] for r in results)) for i, p in enumerate(peers)}
    return per_fold, seconds


def peer_row(name: str, per_fold: list[dict[str, float]], seconds: float | None = None) -> dict[str, Any]:
    """The results row of one peer: source "peer", package and version, recipe, mean and std per metric."""
    p = peer_by_name(name)
    row: dict[str, Any] = {"source": "peer", "package": p.distribution, "version": metadata.version(p.distribution),
                           "model": p.model, "features": p.features, "seeds": p.seeds}
    if seconds is not None:
        row["seconds"] = round(seconds, 1)
    row.update(yeast_eval.summarize(per_fold))
    return row


# --- our losses against the peers --------------------------------------------------------------------------

def compare(per_fold: dict[str, list[dict[str, float]]], ours: Sequence[str], peers: Sequence[str],
            metrics: Sequence[str] = ZZ_METRICS) -> list[dict[str, Any]]:
    """Per-fold wins of each of ``ours`` against each of ``peers`` on each metric.

    Args:
        per_fold: {method: [one {metric: value} per fold]}, the folds in the same order for every method.

    Returns:
        one dict per (ours, peer, metric), in that nesting order: ``wins`` / ``losses`` / ``ties`` (folds
        where ours is strictly better / strictly worse / equal, "better" being lower except for average
        precision and macro mAP), ``mean_diff`` = mean(ours) - mean(peer), ``fold_sd`` = the larger of
        the two sample stds (ddof 1) over the folds, ``exceeds_sd`` = |mean_diff| > fold_sd, and
        ``ours_better`` (by the means).
    """
    rows = []
    for o in ours:
        for p in peers:
            if len(per_fold[o]) != len(per_fold[p]):
                raise ValueError("compare: %s has %d folds, %s has %d" % (o, len(per_fold[o]), p, len(per_fold[p])))
            for m in metrics:
                a = np.array([f[m] for f in per_fold[o]], dtype=np.float64)
                b = np.array([f[m] for f in per_fold[p]], dtype=np.float64)
                lower = yeast_eval.LOWER_IS_BETTER[m]
                better, worse = (a < b, a > b) if lower else (a > b, a < b)
                diff = float(a.mean() - b.mean())
                sd = float(max(a.std(ddof=1), b.std(ddof=1))) if len(a) > 1 else 0.0
                rows.append({"ours": o, "peer": p, "metric": m, "folds": len(a), "wins": int(better.sum()),
                             "losses": int(worse.sum()), "ties": int(len(a) - better.sum() - worse.sum()),
                             "mean_diff": diff, "fold_sd": sd, "exceeds_sd": bool(abs(diff) > sd),
                             "ours_better": bool(diff < 0 if lower else diff > 0)})
    return rows


def sources(methods: dict[str, dict[str, Any]], source: str) -> list[str]:
    return [n for n, e in methods.items() if e.get("source") == source]


def comparison_markdown(results: dict[str, Any]) -> str:
    """The comparison section of results.md and of the README, from a results.json dict."""
    methods, per_fold = results["methods"], results["per_fold"]
    ours, peers = sources(methods, "ours"), sources(methods, "peer")
    if not ours or not peers:
        return ""
    rows = compare(per_fold, ours, peers)
    n = rows[0]["folds"]
    cell = {}
    for r in rows:
        text = "%d–%d" % (r["wins"], r["losses"])
        if r["ties"]:
            text += " (%d tied)" % r["ties"]
        text += ", Δ %+.*f" % (3 if r["metric"] == "coverage" else 4, r["mean_diff"])
        if r["exceeds_sd"]:
            text += " **> sd**"
        cell[r["ours"], r["peer"], r["metric"]] = text
    out = ["### Our losses against the peers", "",
           "Per metric: folds where our loss is better – folds where the peer is better (of %d), then "
           "Δ = our mean − the peer's mean; **> sd** marks a |Δ| larger than the fold standard deviation "
           "(the larger of the two methods' sample std over the folds)." % n, "",
           "| our loss | peer | " + " | ".join(ZZ_TITLES[m] for m in ZZ_METRICS) + " |",
           "|---|---|" + "---|" * len(ZZ_METRICS)]
    for o in ours:
        for p in peers:
            out.append("| %s | %s | %s |" % (o, p, " | ".join(cell[o, p, m] for m in ZZ_METRICS)))
    out += ["", "Win counts over the %d peers × %d metrics × %d folds (%d fold comparisons per loss); "
            "metric-peer pairs where the mean difference exceeds the fold sd, for us and against us:"
            % (len(peers), len(ZZ_METRICS), n, len(peers) * len(ZZ_METRICS) * n), "",
            "| our loss | folds won | folds lost | folds tied | better by > sd | worse by > sd |",
            "|---|---:|---:|---:|---:|---:|"]
    for o in ours:
        mine = [r for r in rows if r["ours"] == o]
        out.append("| %s | %d | %d | %d | %d of %d | %d of %d |" % (
            o, sum(r["wins"] for r in mine), sum(r["losses"] for r in mine), sum(r["ties"] for r in mine),
            sum(r["exceeds_sd"] and r["ours_better"] for r in mine), len(mine),
            sum(r["exceeds_sd"] and not r["ours_better"] for r in mine), len(mine)))
    out += ["", "Peers (package version; recipe; features):", ""]
    for p in peers:
        e = methods[p]
        out.append("- %s: %s %s; `%s`; %s." % (p, e["package"], e["version"], e["model"], e["features"]))
    return "\n".join(out)
