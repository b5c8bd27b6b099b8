"""Transfer experiment data: the tag vocabulary, tags of composed canvases, the noise model
(rates measured on a seeded sample), and probe sets built only from held-out scans."""
import os
import sys

import h5py
import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
sys.path.insert(0, os.path.join(EXAMPLES, "multilabel_digits"))
sys.path.insert(0, os.path.join(EXAMPLES, "transfer"))
import digits_data  # noqa: E402
import transfer_data as td  # noqa: E402


@pytest.fixture(scope="module")
def scans():
    return digits_data.load_scans()


@pytest.fixture(scope="module")
def canvases(scans):
    images, targets = scans
    pool = np.arange(len(targets))
    arrays = digits_data.compose(images, targets, pool, 3000, np.random.default_rng(5), td.CANVAS, td.MAX_DIGITS)
    arrays["tags"] = td.clean_tags(arrays["scan_index"], arrays["position"], targets)
    return arrays


def test_vocabulary_has_at_least_100_distinct_tags():
    names = td.tag_names()
    assert len(names) == len(set(names)) == 10 + 90 + 45 + 3
    assert len(names) >= 100


def _cell(corner):
    centre = corner + 4           # centre of an 8-pixel scan; cells of 8 pixels on a 24-pixel canvas
    return 0 if centre < 8 else 1 if centre < 16 else 2


def test_tags_describe_the_placed_digits(scans, canvases):
    _, targets = scans
    names = td.tag_names()
    for i in range(len(canvases["tags"])):
        placed = canvases["scan_index"][i] >= 0
        digits = [int(d) for d in targets[canvases["scan_index"][i][placed]]]
        corners = canvases["position"][i][placed]
        expected = {"digit:%d" % d for d in digits}
        expected |= {"digit:%d@%d,%d" % (d, _cell(r), _cell(c)) for d, (r, c) in zip(digits, corners, strict=True)}
        expected |= {"pair:%d+%d" % (min(a, b), max(a, b)) for j, a in enumerate(digits) for b in digits[j + 1:]}
        expected.add("count:%d" % len(digits))
        got = {names[j] for j in np.nonzero(canvases["tags"][i])[0]}
        assert got == expected, i
    # the digit tags are exactly the demo's 10-way labels
    np.testing.assert_array_equal(canvases["tags"][:, :10], canvases["label"])


def test_tags_cooccur_and_vary_in_frequency(canvases):
    freq = canvases["tags"].mean(axis=0)
    assert freq.min() > 0                          # every tag occurs in 3000 canvases
    assert freq.max() / freq.min() > 10            # like hashtags: a few common, many rare
    names = td.tag_names()
    d3 = canvases["tags"][:, names.index("digit:3")] > 0
    p37 = canvases["tags"][:, names.index("pair:3+7")] > 0
    assert p37.any() and np.all(d3[p37])           # a pair tag implies both digit tags


@pytest.fixture(scope="module")
def noisy_sample(canvases):
    clean = canvases["tags"]
    return clean, td.add_noise(clean, np.random.default_rng(11), drop=0.4, add_per_image=0.3)


def test_noise_rates_measured_on_a_seeded_sample(noisy_sample):
    clean, noisy = noisy_sample
    dropped, added = td.noise_rates(clean, noisy)
    # ~19,000 true tags and 3,000 images: binomial / Poisson std 0.0036 and 0.010
    assert abs(dropped - 0.4) < 0.015
    assert abs(added - 0.3) < 0.04
    assert noisy.dtype == np.float32 and set(np.unique(noisy)) <= {0.0, 1.0}


def test_wrong_tags_follow_tag_popularity(noisy_sample):
    clean, noisy = noisy_sample
    c, n = clean > 0.5, noisy > 0.5
    added = (n & ~c).sum(axis=0)
    popularity = c.sum(axis=0)
    common = popularity >= np.quantile(popularity, 0.9)
    rare = popularity <= np.quantile(popularity, 0.5)
    assert added[common].mean() > 5 * added[rare].mean()


def test_noise_is_seeded_and_its_knobs_work(canvases):
    clean = canvases["tags"]
    a = td.add_noise(clean, np.random.default_rng(3))
    np.testing.assert_array_equal(a, td.add_noise(clean, np.random.default_rng(3)))
    assert not np.array_equal(a, td.add_noise(clean, np.random.default_rng(4)))
    np.testing.assert_array_equal(td.add_noise(clean, np.random.default_rng(3), 0.0, 0.0), clean)
    only_added = td.add_noise(clean, np.random.default_rng(3), drop=1.0, add_per_image=2.0)
    assert not (only_added.astype(bool) & clean.astype(bool)).any()
    assert abs(only_added.sum() / len(clean) - 2.0) < 0.1


def test_probe_split_and_shot_subsets(scans):
    _, targets = scans
    pool = np.arange(0, len(targets), 2)
    train, test = td.probe_split(targets, pool, 50, np.random.default_rng(0))
    assert len(train) == 500 and not set(train) & set(test) and set(train) | set(test) == set(pool)
    np.testing.assert_array_equal(targets[train], np.repeat(np.arange(10), 50))
    subsets = td.shot_subsets(50, 10, 3, np.random.default_rng(0))
    assert len(subsets) == 3 and not np.array_equal(subsets[0], subsets[1])
    for rows in subsets:
        assert len(set(rows)) == 100
        np.testing.assert_array_equal(np.bincount(targets[train[rows]]), [10] * 10)
    np.testing.assert_array_equal(td.shot_subsets(50, 50, 3, np.random.default_rng(0)), [np.arange(500)])
    with pytest.raises(ValueError, match=r"class 0 has .* held-out scans, need more than max_shots=100"):
        td.probe_split(targets, pool, 100, np.random.default_rng(0))


def test_probe_and_tag_test_scans_are_never_seen_in_pretraining(tmp_path, scans):
    images, targets = scans
    d = td.make_data(str(tmp_path), n_train=400, n_val=100, n_tag_test=100, seed=2, max_shots=10,
                     test_positions=2)
    a = d.pop("arrays")
    with h5py.File(d["h5_file"], "r") as f:
        assert f["data"].shape == (400, 1, 24, 24) and f["clean"].shape == f["noisy"].shape == (400, 148)
        pre_scans = set(f["scan_index"][()].ravel()) - {-1}
    pre_pool, held_pool = td.split_pretrain_heldout(targets, 0.5, 2)
    assert pre_scans <= set(pre_pool)
    for name in ("probe_train", "probe_test"):
        assert not pre_scans & set(a[name]["scan"]) and set(a[name]["scan"]) <= set(held_pool)
        np.testing.assert_array_equal(a[name]["label"], targets[a[name]["scan"]])
        # each canvas holds exactly its scan, once
        x = a[name]["data"]
        assert np.allclose(x.reshape(len(x), -1).sum(axis=1), images[a[name]["scan"]].reshape(len(x), -1).sum(axis=1))
    assert len(a["probe_test"]["scan"]) == 2 * len(set(a["probe_test"]["scan"]))
    assert set(a["tag_test"]["scan_index"].ravel()) - {-1} <= set(held_pool)
    assert d["sizes"]["probe_train"] == 100
