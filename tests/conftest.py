"""Shared test set-up: quiet glog, CPU mode, and the tests folder on sys.path.

Tests that need Caffe import it directly: when pycaffe is missing they fail,
they are never skipped (run ``make test``, which builds Caffe first).
"""
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, os.path.dirname(__file__))
