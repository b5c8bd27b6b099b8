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
import transfer_report  # noqa: E402

import run_transfer  # noqa: E402
import transfer_nets  # noqa: E402

SEEDS, CONDITIONS, SHOTS = [1, 2, 3], ["clean", "noisy"], [10, 50]


def fake_runs():
    """Seeds spread the accuracies by 0.03 (same data and initial weights per seed). Softmax
    beats sigmoid and focal by about 0.05 at 50 shots on every seed (exceeds the spread), by
    0.001 to 0.003 at 10 shots (same sign, within the spread); tag mAP differences change sign.
    Focal is 0.01 above sigmoid (the best sigmoid-family loss). Each run has a budget curve at
    iterations 5 and 10; the numbers above are at 10, and at 5 every yardstick is 0.1 lower."""
    runs, search = [], []
    for cond in CONDITIONS:
        for loss in ("softmax", "sigmoid", "focal"):
            for seed in SEEDS:
                base, soft = 0.8 + 0.03 * seed + (0.01 if loss == "focal" else 0.0), loss == "softmax"
                tag_map = 0.5 + ((0.01, -0.01, 0.005)[seed - 1] if soft else 0.0)
                probe = {"10": base + ((0.002, 0.001, 0.003)[seed - 1] if soft else 0.0),
                         "50": base + ((0.054, 0.05, 0.046)[seed - 1] if soft else 0.0)}
                end = {"tag_map": tag_map, "probe_accuracy": probe}
                early = {"tag_map": tag_map - 0.1, "probe_accuracy": {k: v - 0.1 for k, v in probe.items()}}
                runs.append(dict(end, loss=loss, condition=cond, seed=seed, base_lr=0.1,
                                 curve={"5": early, "10": end}))
            search += [dict(runs[-3], base_lr=0.1, val_map=0.4), dict(runs[-3], base_lr=0.3, val_map=0.3),
                       dict(runs[-3], base_lr=0.03, val_map=0.2)]
    return runs, search


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    args = argparse.Namespace(seeds=SEEDS, conditions=CONDITIONS, shots=SHOTS, losses=["softmax", "sigmoid", "focal"],
                              lrs=[0.1, 0.3], max_iter=10, out="x")
    runs, search = fake_runs()
    baselines = [{"features": "raw pixels", "seed": None, "probe_accuracy": {"10": 0.3, "50": 0.4}}] + \
        [{"features": "random CNN", "seed": s, "probe_accuracy": {"10": 0.5 + s / 100, "50": 0.6}} for s in SEEDS]
    selected = {loss: {c: 0.1 for c in CONDITIONS} for loss in args.losses}
    tuning = {"chosen": selected, "interior": {loss: {c: True for c in CONDITIONS} for loss in args.losses},
              "grid": search, "tune_iter": 10, "seed": 1, "command": "tune", "seconds": 2.0, "date": "d",
              "machine": "m", "load_average": {"start": [0.5], "end": [0.6]}}
    res = run_transfer.assemble_results(args, {"sizes": {"pretrain": 10, "probe_test": 5}, "tags": 148,
                                               "noise": {"measured_drop": 0.4, "measured_added_per_image": 0.3}},
                                        runs, tuning, selected, baselines, "cmd", {"total": 1.0},
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
    for name in ("results.md", "budget_curves.png"):
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
            shift = 0.01 if other == "focal" else 0.0                          # focal is 0.01 above sigmoid
            assert small["mean_difference"] == pytest.approx(0.002 - shift) and not small["exceeds_spread"]
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    assert "exceeds the seed spread" in md and "within the seed spread" in md and "| **0.400** |" in md


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


def test_only_the_sigmoid_family_starts_from_the_prior_bias(tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    for loss in transfer_nets.available_losses():
        prior = 0.04 if loss in transfer_nets.SIGMOID_FAMILY else None
        net = caffe_pb2.NetParameter()
        text_format.Merge(transfer_nets.train_prototxt(loss, 148, str(tmp_path / "l.txt"), "clean", prior), net)
        filler = [x for x in net.layer if x.name == transfer_nets.SCORES][0].inner_product_param.bias_filler
        expected = np.log(0.04 / 0.96) if prior else 0.0
        assert filler.value == pytest.approx(expected, abs=1e-6), loss
        assert filler.type == "constant"
    assert set(transfer_nets.SIGMOID_FAMILY) == {"sigmoid", "focal", "asl"}
    solver = transfer_nets.solver_prototxt("/n.prototxt", "/s", 0.3, 2000, 7, snapshot_every=500)
    assert "snapshot: 500" in solver.splitlines() and "stepsize: 1600" in solver.splitlines()


def test_asl_variant_follows_the_package_options(tmp_path):
    from softmax_multilabel_layer.params import SigmoidOptions
    has = all(k in SigmoidOptions.keys() for k in ("gamma_neg", "gamma_pos", "clip"))
    assert transfer_nets.has_asl() == has
    if has:     # the layer's own validation accepts the options the experiment writes
        text = transfer_nets.train_prototxt("asl", 148, str(tmp_path / "l.txt"), "clean")
        assert '"gamma_neg\\": 4' in text and '"clip\\": 0.05' in text
        assert run_transfer.parse_args([]).losses == ["softmax", "sigmoid", "focal", "asl", "zlpr", "two_way"]
    else:
        assert run_transfer.parse_args([]).losses == ["softmax", "sigmoid", "focal", "zlpr", "two_way"]
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


def test_verdict_takes_the_best_sigmoid_family_loss_and_curves_summarise_every_checkpoint(results):
    res, out = results
    for cond in CONDITIONS:
        v = res["verdict"][cond]
        assert v["best_sigmoid_family"] == "focal"          # 0.01 above sigmoid on every seed
        assert v["softmax_better_at_probe_50"] and not v["softmax_better"]     # not at 10 shots, not tag mAP
        assert v["by_metric"]["probe_50"]["mean_difference"] == pytest.approx(0.04)
    curve = res["summary"]["sigmoid"]["clean"]["curve"]
    assert sorted(curve) == ["10", "5"] and res["checkpoints"] == [5, 10]
    assert curve["5"]["probe_accuracy"]["50"]["mean"] == pytest.approx(curve["10"]["probe_accuracy"]["50"]["mean"]
                                                                       - 0.1)
    lines = run_transfer.verdict_lines(res).splitlines()
    assert len(lines) == 2 and "Softmax 1/M does not beat it beyond the seed spread" in lines[0]
    assert "probe 50 +0.040 (beyond the seed spread)" in lines[0]
    table = run_transfer.curve_table(res, "probe_accuracy", "50").splitlines()
    assert table[0] == "| loss | tags | 5 it | 10 it |" and len(table) == 2 + 3 * len(CONDITIONS)
    grid = run_transfer.lr_table(res).splitlines()
    assert grid[0] == "| loss | tuned on | lr 0.03 | lr 0.1 | lr 0.3 | chosen | interior |"
    assert grid[2] == "| softmax | clean | 0.200 | **0.400** | 0.300 | 0.1 | yes |"


def test_grid_is_extended_until_the_chosen_rate_is_interior():
    assert [run_transfer.ladder(x, up) for x, up in [(0.01, True), (0.03, True), (0.1, False), (0.03, False),
                                                      (1.0, True), (0.003, False)]] == [0.03, 0.1, 0.03, 0.01,
                                                                                       3.0, 0.001]
    rows = [{"base_lr": lr, "val_map": v} for lr, v in [(0.01, 0.2), (0.03, 0.5), (0.1, 0.6)]]
    best, nxt = run_transfer.choose(rows, max_grid=6)
    assert best["base_lr"] == 0.1 and nxt == 0.3                     # best at the top edge: go up
    rows.append({"base_lr": 0.3, "val_map": 0.55})
    assert run_transfer.choose(rows, 6) == (rows[2], None)           # interior now
    low = [{"base_lr": lr, "val_map": v} for lr, v in [(0.01, 0.7), (0.03, 0.7), (0.1, 0.1)]]
    assert run_transfer.choose(low, 6)[1] == 0.003                   # a tie goes to the smaller rate, an edge
    assert run_transfer.choose(low, 3)[1] is None                    # the grid is full


def test_a_rate_scores_its_worst_seed_and_a_collapse_on_the_second_seed_rules_it_out():
    # ZLPR's case: the best rate on seed 1 collapses on seed 2, so the next rate down is chosen
    rows = [{"base_lr": lr, "seed": 1, "val_map": v} for lr, v in [(0.01, 0.3), (0.03, 0.8), (0.1, 0.9)]]
    assert run_transfer.next_seed_run(rows, [1, 2]) == (0.1, 2)      # the best so far gets its second seed
    rows.append({"base_lr": 0.1, "seed": 2, "val_map": 0.05})
    assert run_transfer.next_seed_run(rows, [1, 2]) == (0.03, 2)     # now 0.03 may win
    rows.append({"base_lr": 0.03, "seed": 2, "val_map": 0.85})
    assert run_transfer.next_seed_run(rows, [1, 2]) is None          # 0.01 (0.3) cannot beat 0.03's worst (0.8)
    worst = run_transfer.worst_by_rate(rows)
    assert [(r["base_lr"], r["val_map"]) for r in worst] == [(0.01, 0.3), (0.03, 0.8), (0.1, 0.05)]
    assert run_transfer.choose(worst, 6) == (worst[1], None)


def test_pruned_grid_chooses_what_running_every_seed_would():
    rng = np.random.default_rng(29)
    for trial in range(300):
        lrs = [0.003, 0.01, 0.03, 0.1, 0.3][:rng.integers(1, 6)]
        seeds = [1, 2, 3][:rng.integers(1, 4)]
        # a few distinct levels, so ties between rates occur
        table = {(lr, s): float(rng.choice([0.05, 0.4, 0.7, 0.9]) + rng.integers(0, 2) * 0.01)
                 for lr in lrs for s in seeds}
        rows = [{"base_lr": lr, "seed": seeds[0], "val_map": table[lr, seeds[0]]} for lr in lrs]
        while (more := run_transfer.next_seed_run(rows, seeds)) is not None:
            assert more not in [(r["base_lr"], r["seed"]) for r in rows]
            rows.append({"base_lr": more[0], "seed": more[1], "val_map": table[more]})
        full = max(lrs, key=lambda lr: (min(table[lr, s] for s in seeds), -lr))
        best, _ = run_transfer.choose(run_transfer.worst_by_rate(rows), 6)
        assert best["base_lr"] == full, (trial, table, rows)
        assert len(rows) <= len(lrs) * len(seeds)
def test_readme_tables_agree_with_the_committed_results(capsys):
    assert transfer_report.main(["--check"]) == 0, capsys.readouterr().err


def test_readme_tables_check_fails_when_the_results_change(tmp_path, monkeypatch):
    import transfer_report
    with open(transfer_report.COMMITTED) as f:
        committed = json.load(f)
    loss = next(iter(committed["summary"]))
    cond = next(iter(committed["summary"][loss]))
    committed["summary"][loss][cond]["tag_map"]["mean"] += 0.5
    blocks = {path: {name: make(committed) for name, make in by_name.items()}
              for path, by_name in transfer_report.BLOCKS.items()}
    from softmax_multilabel_layer.tools.docblocks import sync_blocks
    assert sync_blocks(blocks, "g", "s", check=True, root=transfer_report.REPO) == 1


def test_best_sigmoid_family_loss_is_chosen_on_the_seeds_all_of_them_have():
    def run(loss, seed, acc):
        return {"loss": loss, "condition": "clean", "seed": seed, "base_lr": 0.1, "tag_map": acc,
                "probe_accuracy": {"10": acc, "50": acc}}
    runs = [run("softmax", 1, 0.95), run("softmax", 2, 0.96), run("sigmoid", 1, 0.9), run("sigmoid", 2, 0.2),
            run("focal", 1, 0.8)]          # sigmoid's mean over its two seeds (0.55) is below focal's one seed
    summary = run_transfer.summarize(runs, ["softmax", "sigmoid", "focal"], ["clean"], [10, 50])
    comparisons = run_transfer.compare(runs, "softmax", ["clean"], [10, 50])
    v = run_transfer.verdict(summary, comparisons, ["clean"], [10, 50], runs)["clean"]
    assert v["best_sigmoid_family"] == "sigmoid" and v["chosen_on_seeds"] == [1]
    assert v["by_metric"]["probe_50"]["paired"] == pytest.approx([0.05, 0.76])


def test_must_line_names_every_run_below_the_floor_or_the_lowest_run(results):
    res, _ = results
    assert run_transfer.must_line(res) == ("**Must** (50-shot probe accuracy at least 0.5 on clean tags, every loss, "
                                           "every seed): met by all 9 runs; the lowest is sigmoid seed 1 (0.830).")
    low = json.loads(json.dumps(res))
    for r in low["runs"]:
        if r["condition"] == "clean" and (r["loss"], r["seed"]) in (("focal", 3), ("softmax", 2)):
            r["probe_accuracy"]["50"] = 0.499
    assert run_transfer.must_line(low).endswith("**not met** by softmax seed 2 (0.499); focal seed 3 (0.499).")
    assert run_transfer.must_line(low, "noisy").endswith("met by all 9 runs; the lowest is sigmoid seed 1 (0.830).")
    assert run_transfer.must_line(low, floor=0.835).endswith(
        "by softmax seed 2 (0.499); sigmoid seed 1 (0.830); focal seed 3 (0.499).")
    for r in low["runs"]:
        if r["probe_accuracy"]["50"] == 0.499:
            r["probe_accuracy"]["50"] = 0.5            # at the floor is enough
    assert run_transfer.must_line(low).endswith("met by all 9 runs; the lowest is softmax seed 2 (0.500).")


def test_lr_table_shows_the_worst_seed_and_marks_rates_run_with_fewer_seeds():
    rows = [{"loss": "zlpr", "condition": "clean", "base_lr": lr, "seed": s, "val_map": v}
            for lr, s, v in [(0.01, 1, 0.33), (0.03, 1, 0.886), (0.03, 2, 0.88), (0.1, 1, 0.834)]]
    tuning = {"grid": rows, "chosen": {"zlpr": {"clean": 0.03}}, "interior": {"zlpr": {"clean": True}},
              "seeds": [1, 2]}
    table = run_transfer.lr_table({"tuning": tuning}).splitlines()
    assert table[2] == "| zlpr | clean | 0.330† | **0.880** | 0.834† | 0.03 | yes |"
    assert table[-1].startswith("† run with the first seed only")
    tuning["grid"] = rows[1:3]
    assert "†" not in run_transfer.lr_table({"tuning": tuning})


def _tuning(pairs, rate, command, tune_iter=2000, seeds=(1, 2)):
    chosen: dict[str, dict[str, float]] = {}
    interior: dict[str, dict[str, bool]] = {}
    grid = []
    for loss, c in pairs:
        chosen.setdefault(loss, {})[c] = rate
        interior.setdefault(loss, {})[c] = True
        grid.append({"loss": loss, "condition": c, "base_lr": rate, "seed": 1, "val_map": 0.5})
    return {"chosen": chosen, "interior": interior, "grid": grid, "tune_iter": tune_iter, "seeds": list(seeds),
            "prior": {c: 0.02 for _, c in pairs}, "command": command, "seconds": 10.0, "date": "d", "machine": "m",
            "load_average": {"start": [1.0], "end": [2.0]}}


def test_tuning_one_condition_keeps_the_other_conditions_grid_and_says_which_command_made_each():
    """--tune --conditions noisy after a clean grid: clean's rates, rows and command stay; noisy's are new;
    a second noisy grid replaces the first; a grid made with another rule is refused."""
    losses = ("softmax", "sigmoid")
    clean = _tuning([(x, "clean") for x in losses], 0.1, "tune clean")
    noisy = _tuning([(x, "noisy") for x in losses], 0.03, "tune noisy")
    merged = run_transfer.merge_tuning(clean, noisy)
    assert merged["chosen"] == {x: {"clean": 0.1, "noisy": 0.03} for x in losses}
    assert list(merged["chosen"]["softmax"]) == ["clean", "noisy"]      # the first condition stays first
    assert sorted((r["condition"], r["base_lr"]) for r in merged["grid"]) == \
        [("clean", 0.1)] * 2 + [("noisy", 0.03)] * 2
    assert [s["command"] for s in merged["sessions"]] == ["tune clean", "tune noisy"]
    assert run_transfer.tuned_rates_from(merged, list(losses), ["clean", "noisy"])[0] == merged["chosen"]
    again = run_transfer.merge_tuning(merged, _tuning([("sigmoid", "noisy")], 0.01, "tune sigmoid noisy"))
    assert again["chosen"] == {"softmax": {"clean": 0.1, "noisy": 0.03}, "sigmoid": {"clean": 0.1, "noisy": 0.01}}
    assert [(s["command"], s["pairs"]) for s in again["sessions"]] == [
        ("tune clean", [["sigmoid", "clean"], ["softmax", "clean"]]), ("tune noisy", [["softmax", "noisy"]]),
        ("tune sigmoid noisy", [["sigmoid", "noisy"]])]
    assert len(again["grid"]) == 4
    assert {r["base_lr"] for r in again["grid"] if r["condition"] == "noisy"} == {0.03, 0.01}
    assert run_transfer.merge_tuning(clean, _tuning([(x, "clean") for x in losses], 0.3, "t"))["chosen"] == \
        {x: {"clean": 0.3} for x in losses}
    text = transfer_report.tuning_measured(merged)
    assert text.startswith("clean tags: `tune clean`, m, load average 1.0 to 2.0")
    assert "; noisy tags: `tune noisy`" in text
    assert transfer_report.tuning_measured(clean) == "`tune clean`, m, load average 1.0 to 2.0, d, 10 s"
    for other in (_tuning([("softmax", "noisy")], 0.03, "t", tune_iter=1000),
                  _tuning([("softmax", "noisy")], 0.03, "t", seeds=(1,))):
        with pytest.raises(SystemExit, match="tune every loss and condition with one rule"):
            run_transfer.merge_tuning(clean, other)


def test_last_budget_step_is_paired_by_seed_and_judged_against_the_spread(results):
    """The fake runs rise by 0.1 from iteration 5 to 10 on every seed (seed std 0.03): rising. A loss whose
    last step is 0 on one seed is level; one that falls on every seed by more than the spread is falling."""
    res, _ = results
    step = transfer_report.last_step(res)
    assert {v["moved"] for m in step["clean"].values() for v in m.values()} == {1}
    assert step["clean"]["focal"]["probe 50"]["paired"] == pytest.approx([0.1, 0.1, 0.1])
    changed = json.loads(json.dumps(res))
    for r in changed["runs"]:
        if r["condition"] == "noisy" and r["loss"] == "sigmoid" and r["seed"] == 2:
            r["curve"]["10"] = r["curve"]["5"]                       # one seed flat: level
        if r["condition"] == "noisy" and r["loss"] == "focal":
            r["curve"]["5"] = {"tag_map": r["tag_map"] + 0.2,          # every seed 0.2 down: falling
                               "probe_accuracy": {k: v + 0.2 for k, v in r["probe_accuracy"].items()}}
    step = transfer_report.last_step(changed)
    assert step["noisy"]["sigmoid"]["probe 50"]["moved"] == 0 and step["noisy"]["focal"]["tag mAP"]["moved"] == -1
    assert step["noisy"]["softmax"]["tag mAP"]["moved"] == 1
    lines = transfer_report.last_step_lines(changed).splitlines()
    assert lines[0] == ("- **clean tags**, 5 to 10 iterations (paired by seed): still rising beyond the seed spread: "
                        "softmax (probe 50 +0.100, tag mAP +0.100); sigmoid (probe 50 +0.100, tag mAP +0.100); "
                        "focal (probe 50 +0.100, tag mAP +0.100); level within the seed spread: none.")
    assert "falling beyond the seed spread: focal (probe 50 -0.200, tag mAP -0.200)" in lines[1]
    assert lines[1].endswith("level within the seed spread: sigmoid.")


def test_paired_difference_needs_two_seeds_one_sign_and_more_than_the_spread():
    """run_transfer.paired: one seed never exceeds the spread; two seeds of one sign beyond the larger seed std
    do; a sign change or a mean inside the spread does not."""
    d, spread, exceeds = run_transfer.paired([0.9], [0.5])
    assert d.tolist() == pytest.approx([0.4]) and spread == 0.0 and not exceeds
    d, spread, exceeds = run_transfer.paired([0.9, 0.8], [0.5, 0.5])
    assert spread == pytest.approx(np.std([0.9, 0.8], ddof=1)) and exceeds
    assert not run_transfer.paired([0.9, 0.4], [0.5, 0.5])[2]                 # one seed up, one down
    assert not run_transfer.paired([0.9, 0.52], [0.5, 0.5])[2]                # mean 0.21 < std 0.27
    assert run_transfer.paired([0.5, 0.5], [0.9, 0.8])[2]                     # beyond the spread, downward
    d, spread, exceeds = run_transfer.paired([0.9, 0.9], [0.8, 0.2])          # the wider loss sets the spread
    assert spread == pytest.approx(np.std([0.8, 0.2], ddof=1)) and not exceeds   # mean 0.4 < std 0.42
