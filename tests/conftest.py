"""Shared test set-up: quiet glog, CPU mode, the tests folder on sys.path, and the hypothesis profiles.

Tests that need Caffe import it directly: when pycaffe is missing they fail,
they are never skipped (run ``make test``, which builds Caffe first).

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``ci``, the default, is
derandomized (every run draws the same examples, so a failure replays) and
keeps no example database; ``fuzz`` (``make fuzz``) draws new random examples
on every run and prints the blob that reproduces a failure.
"""
import os
import pathlib
import sys

from hypothesis import settings

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require_caffe_feature(name):
    """Fail (or, only with ``USE_SYSTEM_CAFFE=1`` outside CI, skip) when the Caffe
    found lacks an optional feature (see softmax_multilabel_layer.tools.caffe_features).

    The Caffe that ``make setup`` builds has every feature, so in CI and with the
    built Caffe a missing feature is a broken build: the test fails.
    """
    import pytest

    from softmax_multilabel_layer.tools.caffe_features import FEATURES, caffe_features

    if caffe_features()[name]:
        return
    message = "the Caffe found lacks %s" % FEATURES[name]
    system = pathlib.Path(REPO, ".venv", ".use-system-caffe").read_text().strip() == "1" \
        if os.path.exists(os.path.join(REPO, ".venv", ".use-system-caffe")) else False
    if system and not os.environ.get("CI"):
        pytest.skip(message + " (USE_SYSTEM_CAFFE=1)")
    pytest.fail(message + ": the Caffe built by `make setup` must have it")


# Targets y/M with real-valued labels above 1: the usage warning our softmax layer gives with "count".
ABOVE_ONE = r"has values above 1 .* with \"normalize_targets\": \"count\""


def warns_if(expected, match=ABOVE_ONE):
    """``pytest.warns(MultilabelLossWarning, match=match)`` when ``expected``, else a context that adds nothing: with
    warnings as errors (pyproject.toml) an unexpected warning then fails the test."""
    import contextlib

    import pytest

    from softmax_multilabel_layer.losses.usage_warnings import MultilabelLossWarning
    return pytest.warns(MultilabelLossWarning, match=match) if expected else contextlib.nullcontext()
