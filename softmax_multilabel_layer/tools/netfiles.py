"""The files a net's data layers read, checked before any net is built (Caffe aborts the process, with a glog
stack trace, on a missing source, list entry or mean file), and the size of list-backed sources.

No Caffe import at module level: the layers are NetParameter messages read by the caller.
"""
import os
from typing import Any

from softmax_multilabel_layer.params import IMAGE_DATA_OWNER, ImageDataOptions, MultilabelLossError


def in_phase(layer: Any, phase: int) -> bool:
    """Caffe's NetStateRule test, on the phase only (stages and levels are not part of a deploy)."""
    if layer.include:
        return any(not rule.HasField("phase") or rule.phase == phase for rule in layer.include)
    return not any(rule.HasField("phase") and rule.phase == phase for rule in layer.exclude)


def _layer_sources(layer: Any) -> list[tuple[str, str]]:
    """(what, path) of every file a data layer reads: its source, the files a source lists, a mean file."""
    files: list[tuple[str, str]] = []
    if layer.type in ("Data", "ImageData", "WindowData") and layer.transform_param.mean_file:
        files.append(("mean_file", layer.transform_param.mean_file))
    if layer.type == "HDF5Data":
        files.append(("source", layer.hdf5_data_param.source))
    elif layer.type == "Data":
        files.append(("source", layer.data_param.source))
    elif layer.type == "ImageData":
        files.append(("source", layer.image_data_param.source))
        if layer.image_data_param.mean_file:
            files.append(("mean_file", layer.image_data_param.mean_file))
    elif layer.type == "WindowData":
        files.append(("source", layer.window_data_param.source))
    return files


def _listed_files(layer: Any, source: str) -> list[tuple[int, str]]:
    """(line, path) of the files a HDF5Data or ImageData source lists."""
    with open(source) as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if layer.type == "HDF5Data":
        return lines
    root = layer.image_data_param.root_folder
    return [(n, root + line.rsplit(" ", 1)[0] if " " in line else root + line) for n, line in lines]


def check_files(net: Any, phase: str = "test", owner: str = "") -> None:
    """One-line error naming the first missing file a data layer of ``net`` (a NetParameter) reads in ``phase``:
    sources, the files they list (HDF5Data, ImageData, our image data layer), mean files, class names.

    Caffe aborts the process (a glog stack trace) on a missing file; this runs before any net is built.
    """
    want = 1 if phase == "test" else 0                     # caffe_pb2.TEST, caffe_pb2.TRAIN
    for layer in net.layer:
        if not in_phase(layer, want):
            continue
        what = "%s%s data layer %r (%s)" % (owner + ": " if owner else "", phase.upper(), layer.name, layer.type)
        for field, path in _layer_sources(layer):
            exists = os.path.isdir(path) or os.path.isfile(path) if field == "source" and layer.type == "Data" \
                else os.path.isfile(path)
            if not exists:
                raise MultilabelLossError("%s: %s %s does not exist (working directory %s)"
                                          % (what, field, path, os.getcwd()))
            if field == "source" and layer.type in ("HDF5Data", "ImageData"):
                for number, listed in _listed_files(layer, path):
                    if not os.path.isfile(listed):
                        raise MultilabelLossError("%s: %s:%d: file %s does not exist" % (what, path, number, listed))
        if layer.type == "Python" and layer.python_param.layer == IMAGE_DATA_OWNER \
                and layer.python_param.module.startswith("softmax_multilabel_layer"):
            from softmax_multilabel_layer.data.image_data import check_files_exist, parse_image_list
            opts = ImageDataOptions.from_param_str(layer.python_param.param_str, layer.name)
            assert opts.source is not None
            images = parse_image_list(opts.source, opts.num_classes, opts.class_names, opts.root_folder,
                                      opts.max_labels, owner=what)
            check_files_exist(images, what, opts.root_folder)


def list_samples(layer: Any) -> tuple[str, int, int] | None:
    """(source, samples, batch size) of a data layer that reads a list-backed source once per epoch, or None."""
    if layer.type == "Python" and layer.python_param.layer == IMAGE_DATA_OWNER:
        from softmax_multilabel_layer.data.image_data import parse_image_list
        opts = ImageDataOptions.from_param_str(layer.python_param.param_str, layer.name)
        assert opts.source is not None
        images = parse_image_list(opts.source, opts.num_classes, opts.class_names, opts.root_folder, opts.max_labels)
        world = opts.world_size or 1
        return opts.source, len(images.paths) // world, opts.batch_size
    if layer.type == "ImageData":
        source = layer.image_data_param.source
        return source, len(_listed_files(layer, source)), layer.image_data_param.batch_size
    if layer.type == "HDF5Data":
        import h5py
        source, total = layer.hdf5_data_param.source, 0
        for _, path in _listed_files(layer, source):
            with h5py.File(path, "r") as f:
                total += len(f[layer.top[0]])
        return source, total, layer.hdf5_data_param.batch_size
    if layer.type == "Data" and layer.data_param.backend == 1:        # LMDB
        import lmdb
        source = layer.data_param.source
        with lmdb.open(source, readonly=True, lock=False) as env:
            return source, int(env.stat()["entries"]), layer.data_param.batch_size
    return None




__all__ = ["check_files", "in_phase", "list_samples"]
