"""Caffe ``Python`` data layer for multi-label images: a thin adapter over :mod:`.image_data`.

Prototxt (options in ``param_str`` as JSON; the table is in docs and
:class:`~softmax_multilabel_layer.params.ImageDataOptions`)::

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "softmax_multilabel_layer.data" layer: "MultilabelImageDataLayer"
        param_str: '{"source": "train.txt", "root_folder": "images/", "batch_size": 32, "num_classes": 20,
                     "new_height": 256, "new_width": 256, "crop_size": 224, "mirror": true,
                     "mean_value": [104, 117, 123]}' } }

Tops: ``data`` N x 3 x H x W float32 in BGR order, like Caffe's ``ImageData``
(N x 1 x H x W with ``"is_color": false``); ``label`` N x C multi-hot (dense) or
N x K class indices padded with -1 (``"label_format": "indices"``), then an
optional ``label_weight`` N x K top (the label values, 0 on padding).

The phase comes from Caffe (random crop, mirror and shuffle in TRAIN only).
``rank`` / ``world_size`` default to ``caffe.solver_rank()`` /
``caffe.solver_count()`` when pycaffe has them, else 0 and 1.
"""
from typing import Any

import caffe

from softmax_multilabel_layer.data.image_data import ImageBatchReader
from softmax_multilabel_layer.params import IMAGE_DATA_OWNER, ImageDataOptions, MultilabelLossError

TRAIN = 0


def _solver_shard() -> tuple[int, int]:
    """(rank, world_size) from pycaffe when it has them (multi-GPU builds with NCCL), else (0, 1)."""
    rank, count = getattr(caffe, "solver_rank", None), getattr(caffe, "solver_count", None)
    if rank is None or count is None:
        return 0, 1
    return int(rank()), max(1, int(count()))


class MultilabelImageDataLayer(caffe.Layer):
    """Reads a multi-label image list with prefetching decode threads; see the module docstring."""

    def setup(self, bottom: Any, top: Any) -> None:
        name = IMAGE_DATA_OWNER
        self.reader: ImageBatchReader | None = None
        options = ImageDataOptions.from_param_str(self.param_str, name)
        if len(bottom) != 0:
            raise MultilabelLossError("%s: takes no bottoms, got %d" % (name, len(bottom)))
        tops = 3 if options.label_format == "indices" else 2
        if not 2 <= len(top) <= tops:
            raise MultilabelLossError("%s: got %d tops, expected %s" % (
                name, len(top), "2 (data, label) or 3 (data, label, label_weight)" if tops == 3
                else '2 (data, label); a label_weight top needs "label_format": "indices"'))
        rank, world_size = _solver_shard()
        train = getattr(self, "phase", TRAIN) == TRAIN
        self.reader = ImageBatchReader(options, train=train,
                                       rank=options.rank if options.rank is not None else rank,
                                       world_size=options.world_size if options.world_size is not None else world_size)
        shapes = (self.reader.data_shape, self.reader.label_shape, self.reader.label_shape)
        for i in range(len(top)):
            top[i].reshape(*shapes[i])

    def reshape(self, bottom: Any, top: Any) -> None:
        pass                      # fixed shapes, set in setup

    def forward(self, bottom: Any, top: Any) -> None:
        assert self.reader is not None          # made by setup, which Caffe runs first
        data, label, weight = self.reader.next_batch()
        top[0].data[...] = data
        top[1].data[...] = label
        if len(top) > 2:
            top[2].data[...] = weight

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        pass

    def close(self) -> None:
        """Stop the decode threads. pycaffe never frees a Python layer (the C++ PythonLayer and this object hold
        each other), so deleting the net does not: call this, or let the process end (threads are daemons and
        are stopped at interpreter exit)."""
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
