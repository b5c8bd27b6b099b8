"""Options of the loss layers: one parser and one validator for every layer.

``param_str`` is a JSON object, or a Python dict literal (read with
``ast.literal_eval``, never ``eval``). An empty string means every default.
Each loss has a frozen dataclass of options; ``__post_init__`` validates the
values, so the numpy core and the Caffe layers share the same checks.
"""
import ast
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

NORMALIZATIONS = ("batch_size", "valid", "full", "none")
NORMALIZE_TARGETS = ("count", "sum", "none")
LABEL_FORMATS = ("dense", "indices")


class MultilabelLossError(ValueError):
    """Every error this package raises for bad options or bad input.

    The message starts with the layer (or core function) name, then names the
    blob or option, the value or shape found, and what was expected.
    """


def check_choice(owner: str, key: str, value: Any, allowed: Sequence[str]) -> Any:
    """``value`` if it is one of ``allowed``, else a :class:`MultilabelLossError` naming ``owner`` and ``key``."""
    if value not in allowed:
        raise MultilabelLossError(
            "%s: %s must be one of %s, got %r" % (owner, key, ", ".join('"%s"' % a for a in allowed), value))
    return value


def check_number(owner: str, key: str, value: Any, low: float = -math.inf, high: float = math.inf,
                 high_open: bool = False) -> float:
    """``value`` as a float if it is a finite number (not a bool) in [low, high] (or [low, high) with
    ``high_open``), else a :class:`MultilabelLossError` naming ``owner``, ``key`` and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MultilabelLossError("%s: %s must be a finite number, got %r" % (owner, key, value))
    if value < low or value > high or (high_open and value == high):
        raise MultilabelLossError("%s: %s must be in [%s, %s%s, got %r" % (
            owner, key, low, high, ")" if high_open else "]", value))
    return float(value)


def _integer(owner, key, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise MultilabelLossError("%s: %s must be an integer, got %r" % (owner, key, value))
    return value


def _number_list(owner, key, value, low=0.0):
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise MultilabelLossError("%s: %s must be a non-empty list of numbers, got %r" % (owner, key, value))
    return tuple(check_number(owner, "%s[%d]" % (key, i), v, low=low) for i, v in enumerate(value))


@dataclass(frozen=True)
class _Options:
    owner: str = "softmax_multilabel_layer"

    # Class attributes, not options (ClassVar: not dataclass fields); every subclass sets both.
    layer: ClassVar[str]            # the Caffe layer these options belong to
    core: ClassVar[str | None]      # the core forward function (None: a layer with no numpy core)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "owner"]

    @classmethod
    def from_param_str(cls, param_str: str | None, owner: str) -> Self:
        """Parse a layer's ``param_str`` into validated options."""
        return cls(owner=owner, **parse_param_str(param_str, owner, cls.keys(), cls))

    @classmethod
    def from_kwargs(cls, owner: str, kwargs: Mapping[str, Any]) -> Self:
        """Validated options from keyword arguments of a core function."""
        unknown = sorted(str(k) for k in kwargs if k not in cls.keys())
        if unknown:
            raise MultilabelLossError("%s: unknown option(s) %s; known options: %s%s"
                                      % (owner, ", ".join(unknown), ", ".join(cls.keys()),
                                         _other_layer_hint(cls, unknown)))
        return cls(owner=owner, **kwargs)

    @classmethod
    def resolve(cls, options: object, owner: str, kwargs: Mapping[str, Any]) -> Self:
        """The options of a core call: ``options`` (an instance of this class) or the keywords, never both."""
        if options is None:
            return cls.from_kwargs(owner, kwargs)
        if kwargs:
            raise MultilabelLossError("%s: options= was given together with keyword option(s) %s; give either an "
                                      "options object or keywords, not both"
                                      % (owner, ", ".join(sorted(str(k) for k in kwargs))))
        if not isinstance(options, cls):
            raise MultilabelLossError("%s: options must be a %s, got %s"
                                      % (owner, cls.__name__, type(options).__name__))
        return options

    def check_class_count(self, num_classes: int) -> None:
        """Validate the options that depend on C, the size of the class axis."""


def _other_layer_hint(cls, unknown):
    """For keys that are options of the other loss: say which layer they belong to."""
    hints = []
    for other in _Options.__subclasses__():
        if other is cls:
            continue
        theirs = [k for k in unknown if k in other.keys()]
        if theirs:
            hints.append("%s %s an option of %s%s, not of %s"
                         % (", ".join(theirs), "is" if len(theirs) == 1 else "are", other.layer,
                            "" if other.core is None else " (core function %s)" % other.core, cls.layer))
    return "".join("; " + h for h in hints)


@dataclass(frozen=True)
class SoftmaxOptions(_Options):
    """Options of the multi-label softmax loss; see :func:`softmax_multilabel_forward`."""
    layer = "SoftmaxMultilabelLossLayer"
    core = "softmax_multilabel_forward"
    normalize_targets: str = "count"
    normalization: str = "batch_size"
    axis: int = 1
    label_smoothing: float = 0.0
    label_format: str = "dense"

    def __post_init__(self):
        o = self.owner
        check_choice(o, "normalize_targets", self.normalize_targets, NORMALIZE_TARGETS)
        check_choice(o, "normalization", self.normalization, NORMALIZATIONS)
        _integer(o, "axis", self.axis)
        object.__setattr__(self, "label_smoothing",
                           check_number(o, "label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True))
        check_choice(o, "label_format", self.label_format, LABEL_FORMATS)


@dataclass(frozen=True)
class SigmoidOptions(_Options):
    """Options of the multi-label sigmoid (BCE / focal / ASL) loss; see :func:`sigmoid_multilabel_forward`."""
    layer = "SigmoidMultilabelLossLayer"
    core = "sigmoid_multilabel_forward"
    pos_weight: float | Sequence[float] = 1.0       # a tuple after __post_init__ when given per class
    class_weight: Sequence[float] | None = None     # a tuple after __post_init__
    gamma: float = 0.0
    alpha: float = -1.0
    ignore_label: float | None = None
    normalization: str = "batch_size"
    axis: int = 1
    gamma_neg: float = 0.0
    gamma_pos: float = 0.0
    clip: float = 0.0

    def __post_init__(self):
        o = self.owner
        if isinstance(self.pos_weight, (list, tuple)):
            object.__setattr__(self, "pos_weight", _number_list(o, "pos_weight", self.pos_weight))
        else:
            object.__setattr__(self, "pos_weight", check_number(o, "pos_weight", self.pos_weight, 0.0))
        if self.class_weight is not None:
            object.__setattr__(self, "class_weight", _number_list(o, "class_weight", self.class_weight))
        object.__setattr__(self, "gamma", check_number(o, "gamma", self.gamma, 0.0))
        if self.alpha != -1:
            object.__setattr__(self, "alpha", check_number(o, "alpha (-1 = off)", self.alpha, 0.0, 1.0))
        else:
            object.__setattr__(self, "alpha", -1.0)
        if self.ignore_label is not None:
            object.__setattr__(self, "ignore_label", check_number(o, "ignore_label", self.ignore_label))
        check_choice(o, "normalization", self.normalization, NORMALIZATIONS)
        _integer(o, "axis", self.axis)
        for key in ("gamma_neg", "gamma_pos"):
            object.__setattr__(self, key, check_number(o, key, getattr(self, key), 0.0))
        object.__setattr__(self, "clip", check_number(o, "clip", self.clip, 0.0, 1.0, high_open=True))
        if self.gamma > 0 and (self.gamma_neg > 0 or self.gamma_pos > 0):
            raise MultilabelLossError("%s: gamma = %r sets the focusing of positives and negatives alike; give either "
                                      "gamma, or gamma_pos and gamma_neg (got %r and %r), not both"
                                      % (o, self.gamma, self.gamma_pos, self.gamma_neg))

    def check_class_count(self, num_classes: int) -> None:
        for key in ("pos_weight", "class_weight"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) != num_classes:
                raise MultilabelLossError("%s: %s has %d values but the scores have C=%d classes on the class axis"
                                          % (self.owner, key, len(value), num_classes))


@dataclass(frozen=True)
class ZLPROptions(_Options):
    """Options of the ZLPR loss (Su et al. 2022); see :func:`zlpr_forward`.

    No hyper-parameter: ``normalization`` (``"batch_size"``: divide by O;
    ``"full"``: by the O*I samples; ``"none"``), ``axis`` and ``label_format``
    (``"dense"`` multi-hot, or ``"indices"``: class indices padded with -1).
    """
    layer = "ZLPRLossLayer"
    core = "zlpr_forward"
    normalization: str = "batch_size"
    axis: int = 1
    label_format: str = "dense"

    def __post_init__(self):
        o = self.owner
        check_choice(o, "normalization", self.normalization, ("batch_size", "full", "none"))
        _integer(o, "axis", self.axis)
        check_choice(o, "label_format", self.label_format, LABEL_FORMATS)


@dataclass(frozen=True)
class TwoWayOptions(_Options):
    """Options of the two-way multi-label loss (Kobayashi, CVPR 2023); see :func:`two_way_forward`.

    ``tp`` and ``tn``: the temperatures of the soft-min over the positives and
    of the soft-max over the negatives (> 0); ``axis``. Dense multi-hot labels only.
    """
    layer = "TwoWayLossLayer"
    core = "two_way_forward"
    tp: float = 4.0
    tn: float = 1.0
    axis: int = 1

    def __post_init__(self):
        o = self.owner
        for key in ("tp", "tn"):
            value = check_number(o, key, getattr(self, key), 0.0)
            if value == 0:
                raise MultilabelLossError("%s: %s must be > 0 (a temperature), got %r" % (o, key, value))
            object.__setattr__(self, key, value)
        _integer(o, "axis", self.axis)


def parse_param_str(param_str: str | None, owner: str, known_keys: Collection[str],
                    options_class: type[_Options] | None = None) -> dict[str, Any]:
    """Parse ``param_str`` (JSON object or Python dict literal) into a dict of known keys.

    ``options_class``, if given, lets the error for an unknown key say which
    other layer takes it (``gamma`` given to the softmax layer, say).
    """
    text = (param_str or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise MultilabelLossError(
                "%s: param_str is neither JSON nor a Python dict literal: %r; expected e.g. "
                "'{\"normalization\": \"batch_size\"}'" % (owner, param_str)) from None
    if not isinstance(value, dict):
        raise MultilabelLossError("%s: param_str must be a JSON object (a dict), got %s %r"
                                  % (owner, type(value).__name__, value))
    unknown = sorted(str(k) for k in value if k not in known_keys)
    if unknown:
        raise MultilabelLossError("%s: unknown param_str key(s) %s; known keys: %s%s"
                                  % (owner, ", ".join(unknown), ", ".join(known_keys),
                                     "" if options_class is None else _other_layer_hint(options_class, unknown)))
    return value


# ---------------------------------------------------------------- image data layer options (issue 14)

IMAGE_DATA_OWNER = "MultilabelImageDataLayer"


def _positive_int(owner, key, value, low=1):
    _integer(owner, key, value)
    if value < low:
        raise MultilabelLossError("%s: %s must be an integer >= %d, got %r" % (owner, key, low, value))
    return value


@dataclass(frozen=True)
class ImageDataOptions(_Options):
    """Options of :class:`softmax_multilabel_layer.data.MultilabelImageDataLayer` (and ``convert``).

    ``source`` is required, and ``num_classes`` unless ``class_names`` gives it.
    ``shuffle`` None means true in TRAIN and false in TEST; ``rank`` and
    ``world_size`` None mean "ask pycaffe" (``caffe.solver_rank()``), else 0 and 1.
    """
    layer = IMAGE_DATA_OWNER
    core = None
    source: str | None = None              # required: __post_init__ rejects None
    root_folder: str = ""
    batch_size: int = 32
    num_classes: int | None = None
    label_format: str = "dense"
    max_labels: int | None = None          # required with label_format indices
    new_height: int = 0
    new_width: int = 0
    crop_size: int = 0
    mirror: bool = False
    mean_value: float | list[float] | None = None      # a tuple of floats after __post_init__
    scale: float = 1.0
    is_color: bool = True
    shuffle: bool | None = None
    seed: int = 0
    threads: int = 2
    prefetch: int = 3
    class_names: str | None = None
    skip_bad_images: bool = False
    rank: int | None = None
    world_size: int | None = None

    def __post_init__(self) -> None:
        o = self.owner
        if not isinstance(self.source, str) or not self.source:
            raise MultilabelLossError('%s: source (the list file) is required: a non-empty string, got %r; e.g. '
                                      '\'{"source": "train.txt", "num_classes": 10}\'' % (o, self.source))
        if not isinstance(self.root_folder, str):
            raise MultilabelLossError("%s: root_folder must be a string, got %r" % (o, self.root_folder))
        if self.class_names is not None and (not isinstance(self.class_names, str) or not self.class_names):
            raise MultilabelLossError("%s: class_names must be a file name (one class name a line), got %r"
                                      % (o, self.class_names))
        if self.num_classes is None and self.class_names is None:
            raise MultilabelLossError("%s: num_classes is required (or a class_names file, which gives it)" % o)
        if self.num_classes is not None:
            _positive_int(o, "num_classes", self.num_classes)
        _positive_int(o, "batch_size", self.batch_size)
        check_choice(o, "label_format", self.label_format, LABEL_FORMATS)
        if self.label_format == "indices":
            if self.max_labels is None:
                raise MultilabelLossError('%s: "label_format": "indices" needs max_labels (K, the label slots of '
                                          'each sample; shorter label lists are padded with -1)' % o)
            _positive_int(o, "max_labels", self.max_labels)
        elif self.max_labels is not None:
            raise MultilabelLossError('%s: max_labels is only used with "label_format": "indices", got max_labels '
                                      '%r with "dense"' % (o, self.max_labels))
        for key in ("new_height", "new_width", "crop_size", "seed"):
            _positive_int(o, key, getattr(self, key), low=0)
        if (self.new_height == 0) != (self.new_width == 0):
            raise MultilabelLossError("%s: new_height and new_width must both be 0 (keep the size) or both > 0, "
                                      "got %d and %d" % (o, self.new_height, self.new_width))
        if self.new_height and self.crop_size > min(self.new_height, self.new_width):
            raise MultilabelLossError("%s: crop_size %d is larger than the resized image %dx%d (new_height x "
                                      "new_width)" % (o, self.crop_size, self.new_height, self.new_width))
        for key in ("mirror", "is_color", "skip_bad_images"):
            if not isinstance(getattr(self, key), bool):
                raise MultilabelLossError("%s: %s must be true or false, got %r" % (o, key, getattr(self, key)))
        if self.shuffle is not None and not isinstance(self.shuffle, bool):
            raise MultilabelLossError("%s: shuffle must be true or false, got %r" % (o, self.shuffle))
        if self.mean_value is not None:
            values = self.mean_value if isinstance(self.mean_value, (list, tuple)) else [self.mean_value]
            values = _number_list(o, "mean_value", values, low=-math.inf)
            channels = 3 if self.is_color else 1
            if len(values) not in (1, channels):
                raise MultilabelLossError("%s: mean_value must have %s (is_color %s), got %d: %r"
                                          % (o, "1 or 3 values" if self.is_color else "1 value",
                                             str(self.is_color).lower(), len(values), self.mean_value))
            object.__setattr__(self, "mean_value", values)
        object.__setattr__(self, "scale", check_number(o, "scale", self.scale))
        _positive_int(o, "threads", self.threads)
        _positive_int(o, "prefetch", self.prefetch)
        if self.world_size is not None:
            _positive_int(o, "world_size", self.world_size)
        if self.rank is not None:
            _positive_int(o, "rank", self.rank, low=0)
            if self.rank >= (self.world_size or 1):
                raise MultilabelLossError("%s: rank must be in [0, world_size) = [0, %d), got %d"
                                          % (o, self.world_size or 1, self.rank))

    def label_width(self, num_classes: int) -> int:
        """Width of the label (and label_weight) blob: K = max_labels with indices labels, else C = num_classes."""
        if self.label_format == "indices":
            assert self.max_labels is not None     # __post_init__ requires it with indices
            return self.max_labels
        return num_classes
