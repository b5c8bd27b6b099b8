"""Losses: the numpy core of each multi-label loss, label forms, usage warnings, and the Caffe loss layers.

Modules, from the bottom up: :mod:`.cpu` (numpy's SIMD dispatch), :mod:`.common` (shared array helpers and
:class:`~.common.Workspace`), :mod:`.labels` (dense and index label forms), :mod:`.softmax` and
:mod:`.sigmoid` (the kernels), :mod:`.functional` (the public functional API), :mod:`.usage_warnings`, and
:mod:`.layers`, the thin ``caffe.Layer`` adapters (the only module here that imports Caffe).
"""
