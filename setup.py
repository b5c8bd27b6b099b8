"""Thin shim for tools that still call setup.py: everything is in pyproject.toml.

Caffe (pycaffe and the caffe binary) is not a pip dependency, see pyproject.toml.
"""
from setuptools import setup

setup()
