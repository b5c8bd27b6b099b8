"""Yeast benchmark pieces on small data: metrics, decision rule, prototxt rewriting, a tiny caffe run,
the hyper-parameter record and the report. No full benchmark run here."""
import csv
import json
import os
import pathlib
import sys

import numpy as np
import pytest

YEAST = os.path.join(os.path.dirname(__file__), "..", "examples", "yeast")
sys.path.insert(0, YEAST)
import run_yeast  # noqa: E402
import search_yeast  # noqa: E402
import yeast_eval as E  # noqa: E402
import yeast_train as T  # noqa: E402

# --- metrics: Zhang & Zhou's definitions written out as loops ---------------------------------

def zz_reference(Y, S):
    n, L = Y.shape
    one_error = cov = rl = ap = 0.0
    for i in range(n):
        pos = [c for c in range(L) if Y[i, c]]
        neg = [c for c in range(L) if not Y[i, c]]
        rank = {c: 1 + sum(S[i, k] > S[i, c] for k in range(L)) for c in range(L)}  # 1 = top
        one_error += Y[i, int(np.argmax(S[i]))] == 0
        cov += max(rank[c] for c in pos) - 1
        rl += sum(S[i, p] <= S[i, q] for p in pos for q in neg) / (len(pos) * len(neg))
        ap += sum(sum(rank[k] <= rank[c] for k in pos) / rank[c] for c in pos) / len(pos)
    return {"one_error": one_error / n, "coverage": cov / n, "ranking_loss": rl / n, "average_precision": ap / n}


def trained_like(n, L, seed, dtype):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, L)) < 0.3).astype(np.uint8)
    Y[np.arange(n), rng.integers(0, L, n)] = 1          # every row has a label, some have all but one
    Y[0] = 1
    Y[0, 3] = 0
    S = (2.0 * Y + rng.normal(0, 1.2, (n, L))).astype(dtype)   # correlated with labels, not perfect
    return Y, S


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_metrics_equal_zhang_zhou_definitions(dtype):
    Y, S = trained_like(60, 14, 1, dtype)
    pred = (S > 1.0).astype(np.uint8)
    got = E.fold_metrics(Y, S, pred)
    ref = zz_reference(Y, S.astype(np.float64))
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
    assert got["hamming_loss"] == pytest.approx(np.mean(pred != Y))
    assert 0.05 < got["ranking_loss"] < 0.4 and got["coverage"] > 3     # informative, not perfect scores


def test_fold_metrics_perfect_and_reversed_rankings():
    Y = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    S = Y + 0.1 * np.arange(4)
    m = E.fold_metrics(Y, S, Y)
    assert m["ranking_loss"] == 0 and m["one_error"] == 0 and m["average_precision"] == 1
    assert m["macro_map"] == 1
    assert m["coverage"] == pytest.approx((1 + 0 + 0) / 3)   # deepest true label at rank 2, 1, 1, minus 1
    m = E.fold_metrics(Y, -S, 1 - Y)
    assert m["ranking_loss"] == 1 and m["one_error"] == 1 and m["hamming_loss"] == 1
    assert m["coverage"] == pytest.approx(3)                  # always the last rank


def test_decide_never_returns_an_empty_set():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2], [0.5, 0.5, 0.49]])
    np.testing.assert_array_equal(E.decide(probs, 0.5), [[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(E.decide(probs, 0.95), [[1, 0, 0], [0, 1, 0], [1, 0, 0]])


def test_best_threshold_finds_the_hamming_minimum():
    rng = np.random.default_rng(3)
    Y = (rng.random((300, 14)) < 0.3).astype(np.uint8)
    probs = np.clip(0.25 + 0.4 * Y + rng.normal(0, 0.1, Y.shape), 0, 1)   # positives ~0.65, negatives ~0.25
    t, loss = E.best_threshold(Y, probs)
    assert 0.4 <= t <= 0.5
    grid = [np.mean(E.decide(probs, s) != Y) for s in E.THRESHOLDS]
    assert loss == pytest.approx(min(grid))
    assert loss < np.mean(E.decide(probs, 0.3) != Y) and loss < np.mean(E.decide(probs, 0.6) != Y)


def test_summarize_uses_sample_std():
    s = E.summarize([{"a": 1.0}, {"a": 2.0}, {"a": 4.0}])
    assert s["a"]["mean"] == pytest.approx(7 / 3)
    assert s["a"]["std"] == pytest.approx(np.std([1, 2, 4], ddof=1))


def test_probabilities():
    s = np.array([[0.0, 1.0, -2.0], [3.0, 3.0, 3.0]])
    p = T.probabilities("softmax_multilabel", s)
    np.testing.assert_allclose(p.sum(1), 1)
    np.testing.assert_allclose(p[1], 1 / 3)
    np.testing.assert_allclose(T.probabilities("sigmoid_focal", s), 1 / (1 + np.exp(-s)))


# --- prototxts and solver ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", T.VARIANTS)
def test_prepare_run_writes_the_hyper_parameters(tmp_path, variant):
    hp = {"hidden": 96, "dropout": 0.3, "batch_size": 50, "base_lr": 0.002, "weight_decay": 0.0005, "epochs": 7}
    solver, max_iter = T.prepare_run(variant, str(tmp_path), "/x/list.txt", 1000, hp, seed=5, snapshot_every=2)
    assert max_iter == 140
    text = pathlib.Path(solver).read_text()
    for line in ("base_lr: 0.002", "weight_decay: 0.0005", "max_iter: 140", "snapshot: 40", "random_seed: 5",
                 'snapshot_prefix: "%s"' % os.path.join(str(tmp_path), "snap")):
        assert line in text.splitlines(), line
    net = pathlib.Path(tmp_path, "train.prototxt").read_text()
    assert "num_output: 96" in net and "dropout_ratio: 0.3" in net and "batch_size: 50" in net
    assert '"/x/list.txt"' in net and T.DEFAULT_LIST not in net
    assert "num_output: 14" in net                      # the score layer is untouched


def test_set_net_fields_refuses_a_prototxt_without_the_fields():
    with pytest.raises(ValueError, match=r"odd\.prototxt: fc1 num_output or dropout_ratio not found"):
        T.set_net_fields('layer { name: "fc" }', 10, 0.5, where="odd.prototxt")


def test_iterations_cover_the_epochs():
    assert T.iterations(1740, 256, 30) == 204        # ceil(52200 / 256)
    assert T.iterations(256, 256, 1) == 1


def test_tiny_caffe_run_of_every_loss_and_scoring(tmp_path):
    """Each prototxt/yeast loss trains for a few iterations with caffe train; the deploy net loads it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 103)).astype(np.float32)
    Y = (rng.random((64, 14)) < 0.3).astype(np.float32)
    Y[:, 0] = 1
    lst = T.write_h5(str(tmp_path / "data"), X, Y)
    hp = {"hidden": 16, "dropout": 0.5, "batch_size": 32, "base_lr": 0.001, "weight_decay": 0.0001, "epochs": 2}
    for variant in T.VARIANTS:
        run_dir = str(tmp_path / variant)
        snaps = T.train_run(variant, run_dir, lst, 64, hp, snapshot_every=1)
        assert [it for it, _ in snaps] == [2, 4]              # 64 rows, batch 32: 2 iterations an epoch
        scores = T.Scorer(16, 0.5, run_dir).scores(snaps[-1][1], X[:10])
        assert scores.shape == (10, 14) and np.isfinite(scores).all() and scores.std() > 0


def test_failed_caffe_run_shows_the_log(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(str(tmp_path / "missing.h5") + "\n")
    hp = {"hidden": 8, "dropout": 0.5, "batch_size": 4, "base_lr": 0.01, "weight_decay": 0, "epochs": 1}
    solver, _ = T.prepare_run("sigmoid_bce", str(tmp_path / "run"), str(lst), 8, hp)
    with pytest.raises(RuntimeError, match=r"exited with .* last lines of"):
        T.run_caffe(solver, str(tmp_path / "run" / "train.log"))


# --- the committed hyper-parameter record --------------------------------------------------------

def test_hparams_cover_every_variant_and_fold_and_match_the_search_log():
    with open(search_yeast.HPARAMS) as f:
        record = json.load(f)
    assert set(record["variants"]) == set(T.VARIANTS)
    with open(search_yeast.SEARCH_LOG) as f:
        rows = list(csv.DictReader(f))
    for v, per_fold in record["variants"].items():
        assert sorted(per_fold, key=int) == [str(k) for k in range(10)]
        for k, hp in per_fold.items():
            cands = [r for r in rows if r["variant"] == v and r["fold"] == k]
            assert len(cands) == len(list(search_yeast.grid_points())) * (search_yeast.MAX_EPOCHS //
                                                                          search_yeast.EPOCH_STEP)
            best = min(cands, key=lambda r: search_yeast.criterion(
                {m: float(r[m]) for m in ("ranking_loss", "average_precision")}))
            assert (int(best["hidden"]), float(best["base_lr"]), float(best["weight_decay"]),
                    int(best["epochs"]), float(best["threshold"])) == \
                (hp["hidden"], hp["base_lr"], hp["weight_decay"], hp["epochs"], hp["threshold"]), (v, k)


def test_load_hparams_names_the_missing_fold(tmp_path):
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"variants": {"sigmoid_bce": {"0": {}}}}))
    with pytest.raises(SystemExit, match=r"no hyper-parameters for variant sigmoid_bce, fold\(s\) \[1\]"):
        run_yeast.load_hparams(str(path), ["sigmoid_bce"], [0, 1])


def test_published_values_need_a_table(tmp_path):
    path = tmp_path / "pub.json"
    entry = {"cite": "X", "table": None, "values": {"ranking_loss": {"mean": 0.1, "std": 0.01}}}
    path.write_text(json.dumps({"methods": {"M": entry}}))
    with pytest.raises(SystemExit, match="M needs a 'table'"):
        run_yeast.load_published(str(path))
    entry["table"] = "Table 2"
    path.write_text(json.dumps({"methods": {"M": entry, "N": {"cite": "Y", "values": {}, "status": "not found"}}}))
    methods, missing = run_yeast.load_published(str(path))
    assert methods["M"]["source"] == "published" and methods["M"]["ranking_loss"]["mean"] == 0.1
    assert missing == {"N": "Y: not found"}


def test_targets_compare_best_of_ours_with_best_baseline():
    def e(src, rl, ap):
        return {"source": src, "ranking_loss": {"mean": rl, "std": 0}, "average_precision": {"mean": ap, "std": 0}}
    methods = {"a": e("ours", 0.17, 0.75), "b": e("ours", 0.18, 0.77), "lr": e("baseline", 0.175, 0.76),
               "mlp": e("baseline", 0.171, 0.765), "pub": e("published", 0.1, 0.9)}
    methods["lr"]["model"], methods["mlp"]["model"] = "LogisticRegression", "MLPClassifier"
    t = run_yeast.targets(methods)
    assert t["ranking_loss"] == {"best_ours": "a", "value": 0.17, "best_baseline": "mlp", "baseline": 0.171,
                                 "beats": True}
    assert t["average_precision"]["best_ours"] == "b" and t["average_precision"]["beats"] is True
    methods["mlp"]["ranking_loss"]["mean"] = 0.169
    assert run_yeast.targets(methods)["ranking_loss"]["beats"] is False
    # Caffe's own layer is neither one of ours nor one of the scikit-learn baselines of the target
    methods["native"] = dict(e("baseline", 0.1, 0.95), variant="sigmoid_native")
    assert run_yeast.targets(methods)["ranking_loss"]["best_ours"] == "a"
    assert run_yeast.targets(methods)["ranking_loss"]["best_baseline"] == "mlp"
    def folds(*pairs):
        return [{"ranking_loss": rl, "average_precision": ap} for rl, ap in pairs]
    per_fold = {"a": folds((0.1, 0.8), (0.3, 0.7), (0.2, 0.7)), "mlp": folds((0.2, 0.7), (0.2, 0.75), (0.25, 0.75))}
    methods["b"]["average_precision"]["mean"] = 0.1
    t = run_yeast.targets(methods, per_fold)
    assert t["ranking_loss"]["folds_won"] == "2 of 3" and t["average_precision"]["folds_won"] == "1 of 3"


def test_markdown_table_rows():
    m = {"ours: x": {"source": "ours", **{k: {"mean": 0.5, "std": 0.01} for k in E.METRICS}},
         "P": {"source": "published", "ranking_loss": {"mean": 0.167, "std": 0.016}}}
    lines = run_yeast.markdown_table(m).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| ours: x | ours | 0.5000 ± 0.0100 |")
    assert "0.167 ± 0.016" in lines[3] and lines[3].count("|") == len(E.METRICS) + 3
