"""Packaging for softmax_multilabel_layer (Caffe Python loss layers).

Caffe itself (pycaffe and the caffe binary) is not a pip dependency: it is
built by scripts/install_caffe.sh or taken from an existing install, see
README.md. Never depend on the PyPI package named ``caffe``: it is an empty
placeholder.
"""
from setuptools import setup

setup(
    name="softmax_multilabel_layer",
    version="0.1.0",
    description="Multi-label softmax and sigmoid loss layers for Caffe (Python layers)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=["softmax_multilabel_layer"],
    python_requires=">=3.8",
    install_requires=["numpy", "protobuf"],
    entry_points={"console_scripts": ["softmax-multilabel = softmax_multilabel_layer.cli:main"]},
)
