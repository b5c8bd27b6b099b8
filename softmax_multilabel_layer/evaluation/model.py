"""A trained model carried whole: the model folder that ``softmax-multilabel deploy --out`` writes, and
:class:`Model`, which reads it (scikit-learn's idiom: ``predict_proba``, ``predict``).

A model folder holds::

    deploy.prototxt      the deploy net (C++ layers only; top "prob")
    weights.caffemodel   the trained weights
    model.json           class names, the input as the TEST phase fed it, the activation, the decision rule
                         (and per-class thresholds once calibrated), provenance
    mean.npy             the mean image, when the train net used a mean_file

Two engines run the net: ``"caffe"`` (pycaffe) and ``"opencv"`` (``cv2.dnn.readNetFromCaffe`` and numpy only,
no Caffe import), so a model trained with Caffe can be used where Caffe does not build::

    >>> from softmax_multilabel_layer import Model
    >>> model = Model.load("output/model", engine="opencv")          # doctest: +SKIP
    >>> model.predict_proba(["a.jpg", "b.jpg"]).shape                 # doctest: +SKIP
    (2, 10)
    >>> model.predict(["a.jpg"])                                      # doctest: +SKIP
    [['two', 'five']]

Preprocessing is the TEST phase's, exactly: OpenCV decoding (grey or BGR), the resize (bilinear), the centre
crop, ``(pixel - mean) * scale`` in float32 (Caffe's ``DataTransformer``). This module imports no Caffe; the
``"caffe"`` engine imports it when a model is loaded with it.
"""
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from softmax_multilabel_layer.evaluation.rules import class_thresholds, parse_rule, predict_labels
from softmax_multilabel_layer.params import MultilabelLossError

MODEL_FORMAT = "softmax-multilabel-model"
FORMAT_VERSION = 1
SPEC_FILE = "model.json"
ENGINES = ("caffe", "opencv")
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".jpe", ".png", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp")

Image = str | os.PathLike[str] | NDArray[Any]


# ---------------------------------------------------------------------------------------------------------------
# model.json

def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a model.json written by ``softmax-multilabel deploy``."""
    spec = os.path.join(path, SPEC_FILE)
    if not os.path.isfile(spec):
        return False
    try:
        with open(spec) as f:
            return json.load(f).get("format") == MODEL_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_spec(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The model.json of a model folder, checked; one-line errors naming the folder or the field."""
    path = os.path.join(folder, SPEC_FILE)
    if not os.path.isdir(folder):
        raise MultilabelLossError("model folder %s does not exist (write one with `softmax-multilabel deploy "
                                  "train_val.prototxt --weights W.caffemodel --out %s`)" % (folder, folder))
    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError as exc:
        raise MultilabelLossError("%s is not a model folder: %s (%s); `softmax-multilabel deploy ... --out` "
                                  "writes one" % (folder, path, exc.strerror)) from None
    except ValueError as exc:
        raise MultilabelLossError("%s: not JSON (%s)" % (path, exc)) from None
    if not isinstance(spec, dict) or spec.get("format") != MODEL_FORMAT:
        raise MultilabelLossError("%s: not a model.json of %s (\"format\": %r)"
                                  % (path, MODEL_FORMAT, spec.get("format") if isinstance(spec, dict) else spec))
    for key in ("deploy", "weights", "input", "output", "class_names"):
        if key not in spec:
            raise MultilabelLossError("%s: the field %r is missing" % (path, key))
    for key in ("deploy", "weights"):
        if not os.path.isfile(os.path.join(folder, spec[key])):
            raise MultilabelLossError("model folder %s: %s file %s is missing" % (folder, key, spec[key]))
    return spec


def write_spec(folder: str | os.PathLike[str], spec: dict[str, Any]) -> None:
    """Write model.json atomically: a temporary file in the folder, renamed over the old one when complete."""
    fd, tmp = tempfile.mkstemp(prefix=".model.json.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(folder, SPEC_FILE))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def set_thresholds(folder: str | os.PathLike[str], thresholds: Sequence[float] | NDArray[np.float64],
                   calibration: dict[str, Any]) -> dict[str, Any]:
    """Store per-class thresholds in model.json (``null`` = never predict the class) and make them the rule.

    Returns the new model.json content.
    """
    spec = read_spec(folder)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (len(spec["class_names"]),):
        raise MultilabelLossError("%s: %d thresholds for %d classes" % (folder, t.size, len(spec["class_names"])))
    spec["thresholds"] = [float(v) if np.isfinite(v) else None for v in t]
    spec["rule"] = "thresholds"
    spec["calibration"] = calibration
    write_spec(folder, spec)
    return spec


# ---------------------------------------------------------------------------------------------------------------
# images -> the net input

def image_paths(items: Iterable[str]) -> list[str]:
    """Files as given, and the image files under folders (recursively, sorted); missing paths are kept (their
    error comes when they are read)."""
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                raise MultilabelLossError("folder %s holds no image file (%s)" % (item, " ".join(IMAGE_EXTENSIONS)))
            paths += found
        else:
            paths.append(str(item))
    return paths


def _decode(image: Image, color: bool, resize: Sequence[int] | None) -> NDArray[np.uint8]:
    """H x W x C uint8 (BGR or grey), as Caffe's ReadImageToCVMat: decoded with OpenCV, resized bilinearly."""
    from softmax_multilabel_layer.data.image_data import ImageDecodeError, load_image
    height, width = resize or (0, 0)
    if isinstance(image, (str, os.PathLike)):
        try:
            return load_image(os.fspath(image), is_color=color, new_height=height, new_width=width)
        except ImageDecodeError:
            raise MultilabelLossError("cannot read image %s: missing, unreadable or not an image format OpenCV "
                                      "knows" % os.fspath(image)) from None
    import cv2
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise MultilabelLossError("an image array must be uint8 H x W (grey) or H x W x 3 (BGR, as cv2.imread "
                                  "gives it), got %s %s" % (img.dtype, img.shape))
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if color and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif not color and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if height and width and img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height))
    return img if img.ndim == 3 else img[:, :, None]


def prepare_image(image: Image, spec: dict[str, Any], mean_image: NDArray[np.float32] | None = None,
                  out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """One image -> the C x H x W float32 net input, as the TEST phase prepared it.

    Args:
        image: a file path, or a decoded uint8 array (H x W grey or H x W x 3 BGR, as ``cv2.imread`` gives).
        spec: the ``input`` object of model.json: ``shape`` [C, H, W], ``resize`` [H, W] or null, ``crop``
            (0: none), ``mean_value`` (one or C values) or a mean image, ``scale``, ``channel_order``.
        mean_image: the mean image (C x H0 x W0, the size before the crop) when ``spec`` has a ``mean_file``.

    Math: ``x = (crop(resize(img)) - mean) * scale`` in float32; the crop is centred, offsets
    ``((h - H) // 2, (w - W) // 2)``; a mean image is cropped at the same offsets (Caffe's DataTransformer).
    """
    from softmax_multilabel_layer.data.image_data import Transform
    channels, height, width = spec["shape"]
    crop = bool(spec.get("crop"))
    img = _decode(image, channels == 3, spec.get("resize"))
    h, w = img.shape[:2]
    where = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "array"
    if crop:
        if h < height or w < width:
            raise MultilabelLossError("image %s is %dx%d, smaller than the model's input %dx%d (a centre crop)"
                                      % (where, h, w, height, width))
    elif (h, w) != (height, width):
        raise MultilabelLossError("image %s is %dx%d but the model's input is %dx%d (the TEST phase neither "
                                  "resizes nor crops); resize the image as the training data was"
                                  % (where, h, w, height, width))
    top, left = (h - height) // 2, (w - width) // 2
    img = img[top:top + height, left:left + width]
    if spec.get("channel_order", "BGR") == "RGB" and channels == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])
    if out is None:
        out = np.empty((channels, height, width), np.float32)
    scale = float(spec.get("scale", 1.0))
    if mean_image is None:
        transform = Transform(channels, mean_value=spec.get("mean_value"), scale=scale, train=False)
        return transform(img, out, np.random.default_rng(0))
    if mean_image.shape != (channels, h, w):
        raise MultilabelLossError("image %s is %dx%d (after the resize) but the mean image is %s"
                                  % (where, h, w, "x".join(map(str, mean_image.shape))))
    pixels = img.transpose(2, 0, 1).astype(np.float32)
    out[...] = (pixels - mean_image[:, top:top + height, left:left + width]) * np.float32(scale)
    return out


# ---------------------------------------------------------------------------------------------------------------
# engines

class CaffeEngine:
    """The deploy net run by pycaffe (CPU)."""

    def __init__(self, deploy: str, weights: str, input_blob: str, output: str) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        caffe.set_mode_cpu()
        self.net = caffe.Net(deploy, caffe.TEST, weights=weights)
        self.input_blob, self.output = input_blob, output

    def __call__(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        blob = self.net.blobs[self.input_blob]
        if blob.data.shape != x.shape:
            blob.reshape(*x.shape)
            self.net.reshape()
        blob.data[...] = x
        self.net.forward()
        out = self.net.blobs[self.output].data
        return np.array(out.reshape(len(x), -1), dtype=np.float32)


class OpenCVEngine:
    """The deploy net run by OpenCV's DNN module (``cv2.dnn.readNetFromCaffe``): no Caffe needed."""

    def __init__(self, deploy: str, weights: str, input_blob: str, output: str) -> None:
        import cv2
        try:
            self.net = cv2.dnn.readNetFromCaffe(deploy, weights)
        except cv2.error as exc:
            raise MultilabelLossError("OpenCV's DNN cannot read %s: %s" % (deploy, str(exc).strip().splitlines()[-1])
                                      ) from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.input_blob, self.output = input_blob, output

    def __call__(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        import cv2
        self.net.setInput(np.ascontiguousarray(x, dtype=np.float32), self.input_blob)
        try:
            out = self.net.forward(self.output)
        except cv2.error as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()] or ["cv2.error"]
            raise MultilabelLossError("OpenCV's DNN cannot run the net: %s" % lines[-1]) from None
        return np.array(out.reshape(len(x), -1), dtype=np.float32)


def default_engine() -> str:
    """"caffe" when pycaffe imports, else "opencv"."""
    import importlib.util
    try:
        return "caffe" if importlib.util.find_spec("caffe") is not None else "opencv"
    except (ImportError, ValueError):
        return "opencv"


# ---------------------------------------------------------------------------------------------------------------
# the model

class Model:
    """A trained multi-label model: a deploy net, its weights, and how images become its input.

    Load one with :meth:`load` from a folder that ``softmax-multilabel deploy --out`` wrote.

    Attributes:
        class_names: the C class names, in the order of the probability columns.
        rule: the decision rule :meth:`predict` applies by default (``"thresholds"`` once calibrated).
        thresholds: per-class thresholds (C,) (``inf`` = never predicted), or None before calibration.
        spec: the whole model.json.
        engine: "caffe" or "opencv".
    """

    def __init__(self, deploy: str, weights: str, spec: dict[str, Any], engine: str | None = None,
                 folder: str | None = None) -> None:
        engine = engine or default_engine()
        if engine not in ENGINES:
            raise MultilabelLossError("engine %r: expected one of %s" % (engine, ", ".join(ENGINES)))
        self.folder, self.spec, self.engine = folder, spec, engine
        self.class_names: list[str] = [str(n) for n in spec["class_names"]]
        self.input: dict[str, Any] = spec["input"]
        self.rule: str = spec.get("rule") or "top-k:1"
        t = spec.get("thresholds")
        self.thresholds = None if t is None else np.array([np.inf if v is None else v for v in t], np.float64)
        self.mean_image = None
        if self.input.get("mean_file"):
            mean_path = os.path.join(folder or ".", self.input["mean_file"])
            try:
                self.mean_image = np.load(mean_path).astype(np.float32)
            except (OSError, ValueError) as exc:
                raise MultilabelLossError("mean image %s: %s" % (mean_path, exc)) from None
        if engine == "opencv" and spec.get("opencv") is False:
            raise MultilabelLossError("%s: OpenCV's DNN cannot run this net (deploy said so: %s); use engine caffe"
                                      % (folder or deploy, spec.get("opencv_error", "see deploy's warning")))
        runner = CaffeEngine if engine == "caffe" else OpenCVEngine
        self._run = runner(deploy, weights, self.input.get("blob", "data"), spec.get("output", "prob"))

    @classmethod
    def load(cls, folder: str | os.PathLike[str], engine: str | None = None) -> "Model":
        """The model in ``folder`` (written by ``softmax-multilabel deploy --out``).

        Args:
            folder: the model folder.
            engine: "caffe" (pycaffe) or "opencv" (OpenCV's DNN, no Caffe import); default: caffe when
                pycaffe imports, else opencv.
        """
        folder = os.fspath(folder)
        spec = read_spec(folder)
        return cls(os.path.join(folder, spec["deploy"]), os.path.join(folder, spec["weights"]), spec, engine,
                   folder)

    def preprocess(self, image: Image) -> NDArray[np.float32]:
        """One image (path or decoded array) -> the C x H x W float32 input, as the TEST phase prepared it."""
        if self.input.get("kind", "image") != "image":
            x = np.asarray(image, dtype=np.float32)
            if list(x.shape) != list(self.input["shape"]):
                raise MultilabelLossError("an input of this model is an array of shape %s, got %s"
                                          % (tuple(self.input["shape"]), x.shape))
            return x
        return prepare_image(image, self.input, self.mean_image)

    def predict_proba(self, images: Image | Sequence[Image], batch_size: int = 32) -> NDArray[np.float64]:
        """Probabilities (N, C), float64, in the order of :attr:`class_names`.

        Args:
            images: image paths or decoded arrays (uint8, H x W grey or H x W x 3 BGR); one path alone is taken
                as a list of one.
            batch_size: images per forward pass.
        """
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 2):
            images = [images]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MultilabelLossError("batch_size must be an integer >= 1, got %r" % (batch_size,))
        items = list(images)
        out = np.empty((len(items), len(self.class_names)), np.float64)
        shape = tuple(self.input["shape"])
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            x = np.empty((len(batch),) + shape, np.float32)
            for i, image in enumerate(batch):
                x[i] = self.preprocess(image)
            p = self._run(x)
            if p.shape[1] != out.shape[1]:
                raise MultilabelLossError("the net gives %d outputs but the model has %d class names"
                                          % (p.shape[1], out.shape[1]))
            out[start:start + len(batch)] = p
        return out

    def decision_rule(self, rule: str | None = None) -> Any:
        """The rule object: ``rule`` (text, see :func:`.rules.parse_rule`) or the folder's own."""
        rule = rule or self.rule
        if rule == "thresholds":
            if self.thresholds is None:
                raise MultilabelLossError("the model has no calibrated thresholds (run `softmax-multilabel "
                                          "evaluate MODEL/ --list val.txt --calibrate`)")
            return class_thresholds(self.thresholds)
        return parse_rule(rule)

    def label_sets(self, proba: NDArray[np.float64], rule: str | None = None) -> list[list[str]]:
        """Each row's label names under ``rule`` (default: the folder's), highest probability first."""
        chosen = predict_labels(proba, self.decision_rule(rule))
        sets = []
        for row, mask in zip(proba, chosen, strict=True):
            idx = np.flatnonzero(mask)
            idx = idx[np.argsort(-row[idx], kind="stable")]
            sets.append([self.class_names[i] for i in idx])
        return sets

    def predict(self, images: Image | Sequence[Image], rule: str | None = None,
                batch_size: int = 32) -> list[list[str]]:
        """Each image's label names under the folder's decision rule and thresholds (or ``rule``)."""
        return self.label_sets(self.predict_proba(images, batch_size), rule)

    def __repr__(self) -> str:
        return "Model(%r, engine=%r, classes=%d, rule=%r)" % (self.folder, self.engine, len(self.class_names),
                                                               self.rule)


__all__ = ["ENGINES", "MODEL_FORMAT", "Model", "default_engine", "image_paths", "is_model_folder",
           "prepare_image", "read_spec", "set_thresholds", "write_spec"]
