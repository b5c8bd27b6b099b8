"""Transfer experiment report: results.json has the issue's shape, the summary and the
seed-spread verdicts are right, the nets are the digits CNN with T outputs, and the
linear probe reads features. No pretraining runs here."""
import argparse
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "transfer"))
import run_transfer  # noqa: E402
import transfer_nets  # noqa: E402

SEEDS, CONDITIONS, SHOTS = [1, 2, 3], ["clean", "noisy"], [10, 50]


def fake_runs():
    """Seeds spread the accuracies by 0.03 (same data and initial weights per seed). Softmax
    beats sigmoid and focal by about 0.05 at 50 shots on every seed (exceeds the spread), by
    0.001 to 0.003 at 10 shots (same sign, within the spread); tag mAP differences change sign."""
    runs, search = [], []
    for cond in CONDITIONS:
        for loss in ("softmax", "sigmoid", "focal"):
            for seed in SEEDS:
                base, soft = 0.8 + 0.03 * seed, loss == "softmax"
                runs.append({"loss": loss, "condition": cond, "seed": seed, "base_lr": 0.1,
                             "tag_map": 0.5 + ((0.01, -0.01, 0.005)[seed - 1] if soft else 0.0),
                             "probe_accuracy": {"10": base + ((0.002, 0.001, 0.003)[seed - 1] if soft else 0.0),
                                                "50": base + ((0.054, 0.05, 0.046)[seed - 1] if soft else 0.0)}})
            search += [dict(runs[-3], base_lr=0.1, val_map=0.4), dict(runs[-3], base_lr=0.3, val_map=0.3)]
    return runs, search


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    args = argparse.Namespace(seeds=SEEDS, conditions=CONDITIONS, shots=SHOTS, losses=["softmax", "sigmoid", "focal"],
                              lrs=[0.1, 0.3], max_iter=10, out="x")
    runs, search = fake_runs()
    baselines = [{"features": "raw pixels", "seed": None, "probe_accuracy": {"10": 0.3, "50": 0.4}}] + \
        [{"features": "random CNN", "seed": s, "probe_accuracy": {"10": 0.5 + s / 100, "50": 0.6}} for s in SEEDS]
    selected = {loss: {c: 0.1 for c in CONDITIONS} for loss in args.losses}
    res = run_transfer.assemble_results(args, {"sizes": {"pretrain": 10, "probe_test": 5}, "tags": 148,
                                               "noise": {"measured_drop": 0.4, "measured_added_per_image": 0.3}},
                                        runs, search, selected, baselines, "cmd", {"total": 1.0},
                                        {"start": [0.1], "end": [0.2]})
    out = tmp_path_factory.mktemp("report")
    run_transfer.write_report(res, str(out))
    return res, str(out)


def test_results_json_has_the_issue_shape(results):
    _, out = results
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert saved["seeds"] == SEEDS and saved["conditions"] == CONDITIONS and saved["shots"] == SHOTS
    assert len(saved["runs"]) == 3 * len(CONDITIONS) * len(SEEDS)
    for run in saved["runs"]:
        assert run["loss"] in ("softmax", "sigmoid", "focal") and run["condition"] in CONDITIONS
        assert run["seed"] in SEEDS and isinstance(run["tag_map"], float)
        assert sorted(run["probe_accuracy"]) == ["10", "50"]
    assert {(r["loss"], r["condition"], r["seed"]) for r in saved["runs"]} == \
        {(loss, c, s) for loss in ("softmax", "sigmoid", "focal") for c in CONDITIONS for s in SEEDS}
    for name in ("results.md", "transfer.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000


def test_summary_is_mean_and_sample_std_over_seeds(results):
    res, _ = results
    vals = [r["probe_accuracy"]["50"] for r in res["runs"] if r["loss"] == "focal" and r["condition"] == "noisy"]
    s = res["summary"]["focal"]["noisy"]["probe_accuracy"]["50"]
    assert s["mean"] == pytest.approx(np.mean(vals)) and s["std"] == pytest.approx(np.std(vals, ddof=1))
    assert s["n"] == 3 and res["summary"]["focal"]["noisy"]["base_lr"] == 0.1
    assert res["summary"]["softmax"]["clean"]["tag_map"]["mean"] == pytest.approx(0.5 + 0.005 / 3)
    assert res["baseline_summary"]["random CNN"]["10"]["mean"] == pytest.approx(0.52)


def test_spread_verdicts(results):
    res, out = results
    verdict = {(c["condition"], c["versus"], c["metric"]): c for c in res["comparisons"]}
    for cond in CONDITIONS:
        for other in ("sigmoid", "focal"):
            big = verdict[cond, other, "probe_50"]       # +0.05 on every seed, noise 0.005
            assert big["exceeds_spread"] and big["mean_difference"] == pytest.approx(0.05, abs=0.02)
            assert len(big["paired"]) == 3
            assert not verdict[cond, other, "tag_map"]["exceeds_spread"]     # signs differ
            small = verdict[cond, other, "probe_10"]                         # same sign, below the spread
            assert small["mean_difference"] == pytest.approx(0.002) and not small["exceeds_spread"]
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    assert "exceeds the seed spread" in md and "within the seed spread" in md and "(chosen)" in md


def test_nets_are_the_digits_cnn_with_one_output_per_tag(tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    train = caffe_pb2.NetParameter()
    text_format.Merge(transfer_nets.train_prototxt("focal", 148, str(tmp_path / "l.txt"), "noisy"), train)
    deploy = caffe_pb2.NetParameter()
    text_format.Merge(transfer_nets.deploy_prototxt(148), deploy)
    assert [layer.name for layer in train.layer] == [layer.name for layer in deploy.layer] + ["loss"]
    assert train.layer[0].type == "HDF5Data" and deploy.layer[0].type == "Input"
    assert list(deploy.layer[0].input_param.shape[0].dim) == [100, 1, 24, 24]
    assert list(train.layer[0].top) == ["data", "noisy"] and list(train.layer[-1].bottom) == ["fc_out", "noisy"]
    assert deploy.layer[-1].inner_product_param.num_output == 148
    assert json.loads(train.layer[-1].python_param.param_str) == {"gamma": 2}
    assert train.layer[-1].loss_weight == [1.0]
    solver = transfer_nets.solver_prototxt("/n.prototxt", "/s", 0.3, 500, 7)
    assert "test_iter" not in solver and "test_interval" not in solver
    for line in ("base_lr: 0.3", "max_iter: 500", "stepsize: 400", "random_seed: 7", "snapshot: 500",
                 "momentum: 0.9"):
        assert line in solver.splitlines()


def test_asl_variant_follows_the_package_options(tmp_path):
    from softmax_multilabel_layer.params import SigmoidOptions
    has = all(k in SigmoidOptions.keys() for k in ("gamma_neg", "gamma_pos", "clip"))
    assert transfer_nets.has_asl() == has
    if has:     # the layer's own validation accepts the options the experiment writes
        text = transfer_nets.train_prototxt("asl", 148, str(tmp_path / "l.txt"), "clean")
        assert '"gamma_neg\\": 4' in text and '"clip\\": 0.05' in text
        assert run_transfer.parse_args([]).losses == ["softmax", "sigmoid", "focal", "asl"]
    else:
        assert run_transfer.parse_args([]).losses == ["softmax", "sigmoid", "focal"]
        with pytest.raises(SystemExit):
            run_transfer.parse_args(["--losses", "asl"])


def test_probe_separates_informative_features_only():
    rng = np.random.default_rng(0)
    y_tr, y_te = np.repeat(np.arange(10), 10), np.repeat(np.arange(10), 30)
    centres = rng.normal(0, 1, (10, 16))
    good_tr, good_te = centres[y_tr] + rng.normal(0, 0.3, (100, 16)), centres[y_te] + rng.normal(0, 0.3, (300, 16))
    rows = [np.arange(100)]
    assert run_transfer.probe_accuracy(good_tr, y_tr, good_te, y_te, rows) > 0.95
    noise_acc = run_transfer.probe_accuracy(rng.normal(size=(100, 16)), y_tr, rng.normal(size=(300, 16)), y_te, rows)
    assert noise_acc < 0.25


def test_tag_scores_rank_by_the_trained_probability():
    # tag 0: image 0 has the higher logit, image 1 the higher softmax probability
    logits = np.array([[5.0, 4.0], [0.0, -5.0]])
    p = run_transfer.tag_scores(logits, "softmax")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[:, 0], [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(-5))])
    assert p[1, 0] > p[0, 0]
    np.testing.assert_array_equal(run_transfer.tag_scores(logits, "sigmoid"), logits)


def test_training_time_of_a_reused_run_comes_from_its_caffe_log():
    log = ("# caffe train --solver s\nI20261129 23:59:50.500000 1 solver.cpp:231] Iteration 0, loss = 5\n"
           "some line\nI20261130 00:01:05.000000 1 solver.cpp:320] Optimization Done.\n")
    assert run_transfer.log_seconds(log) == pytest.approx(74.5)
    assert run_transfer.log_seconds("no stamps") is None
