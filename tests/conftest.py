"""Shared test set-up: quiet glog, CPU mode, the tests folder on sys.path, and the hypothesis profiles.

Tests that need Caffe import it directly: when pycaffe is missing they fail,
they are never skipped (run ``make test``, which builds Caffe first).

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``ci``, the default, is
derandomized (every run draws the same examples, so a failure replays) and
keeps no example database; ``fuzz`` (``make fuzz``) draws new random examples
on every run and prints the blob that reproduces a failure.
"""
import os
import sys

from hypothesis import settings

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
