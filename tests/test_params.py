"""Option parsing (params.py), without Caffe: the image data layer's options (also ``convert``'s) and the
ASL options of the sigmoid loss. (The loss options' other errors are in test_errors.py, through the layers.)

Every check gives its own exact message (naming the layer, the option, the value found and what is
expected), boundary values on both sides of each limit, and what a valid set of options becomes.
"""
import math

import pytest

from softmax_multilabel_layer.params import ImageDataOptions, MultilabelLossError, SigmoidOptions

BASE = {"source": "train.txt", "num_classes": 5}
EXAMPLE = '; e.g. \'{"source": "train.txt", "num_classes": 10}\''


def options(**kw):
    return ImageDataOptions(owner="L", **{**BASE, **kw})


@pytest.mark.parametrize("bad,message", [
    ({'source': None},
     'L: source (the list file) is required: a non-empty string, got None' + EXAMPLE),
    ({'source': ''},
     'L: source (the list file) is required: a non-empty string, got \'\'' + EXAMPLE),
    ({'source': 5},
     'L: source (the list file) is required: a non-empty string, got 5' + EXAMPLE),
    ({'root_folder': 3},
     'L: root_folder must be a string, got 3'),
    ({'class_names': ''},
     "L: class_names must be a file name (one class name a line), got ''"),
    ({'class_names': 5},
     'L: class_names must be a file name (one class name a line), got 5'),
    ({'num_classes': None},
     'L: num_classes is required (or a class_names file, which gives it)'),
    ({'num_classes': 0},
     'L: num_classes must be an integer >= 1, got 0'),
    ({'num_classes': 2.0},
     'L: num_classes must be an integer, got 2.0'),
    ({'num_classes': True},
     'L: num_classes must be an integer, got True'),
    ({'batch_size': 0},
     'L: batch_size must be an integer >= 1, got 0'),
    ({'label_format': 'sparse'},
     'L: label_format must be one of "dense", "indices", got \'sparse\''),
    ({'label_format': 'indices'},
     'L: "label_format": "indices" needs max_labels (K, the label slots of each sample; '
     'shorter label lists are padded with -1)'),
    ({'label_format': 'indices', 'max_labels': 0},
     'L: max_labels must be an integer >= 1, got 0'),
    ({'max_labels': 3},
     'L: max_labels is only used with "label_format": "indices", got max_labels 3 with "dense"'),
    ({'new_height': -1, 'new_width': -1},
     'L: new_height must be an integer >= 0, got -1'),
    ({'crop_size': -1},
     'L: crop_size must be an integer >= 0, got -1'),
    ({'seed': -1},
     'L: seed must be an integer >= 0, got -1'),
    ({'new_height': 10},
     'L: new_height and new_width must both be 0 (keep the size) or both > 0, got 10 and 0'),
    ({'new_width': 10},
     'L: new_height and new_width must both be 0 (keep the size) or both > 0, got 0 and 10'),
    ({'new_height': 12, 'new_width': 10, 'crop_size': 11},
     'L: crop_size 11 is larger than the resized image 12x10 (new_height x new_width)'),
    ({'new_height': 10, 'new_width': 12, 'crop_size': 11},
     'L: crop_size 11 is larger than the resized image 10x12 (new_height x new_width)'),
    ({'mirror': 1},
     'L: mirror must be true or false, got 1'),
    ({'is_color': 'yes'},
     "L: is_color must be true or false, got 'yes'"),
    ({'skip_bad_images': None},
     'L: skip_bad_images must be true or false, got None'),
    ({'shuffle': 1},
     'L: shuffle must be true or false, got 1'),
    ({'mean_value': [1, 2]},
     'L: mean_value must have 1 or 3 values (is_color true), got 2: [1, 2]'),
    ({'mean_value': [1, 2], 'is_color': False},
     'L: mean_value must have 1 value (is_color false), got 2: [1, 2]'),
    ({'mean_value': [1, 2, 3], 'is_color': False},
     'L: mean_value must have 1 value (is_color false), got 3: [1, 2, 3]'),
    ({'mean_value': []},
     'L: mean_value must be a non-empty list of numbers, got []'),
    ({'mean_value': ['a']},
     "L: mean_value[0] must be a finite number, got 'a'"),
    ({'mean_value': math.inf},
     'L: mean_value[0] must be a finite number, got inf'),
    ({'mean_value': [1, math.nan, 3]},
     'L: mean_value[1] must be a finite number, got nan'),
    ({'scale': 'x'},
     "L: scale must be a finite number, got 'x'"),
    ({'scale': math.inf},
     'L: scale must be a finite number, got inf'),
    ({'threads': 0},
     'L: threads must be an integer >= 1, got 0'),
    ({'prefetch': 0},
     'L: prefetch must be an integer >= 1, got 0'),
    ({'world_size': 0},
     'L: world_size must be an integer >= 1, got 0'),
    ({'rank': -1},
     'L: rank must be an integer >= 0, got -1'),
    ({'rank': 2, 'world_size': 2},
     'L: rank must be in [0, world_size) = [0, 2), got 2'),
    ({'rank': 1},
     'L: rank must be in [0, world_size) = [0, 1), got 1'),
])
def test_each_invalid_option_has_its_own_exact_message(bad, message):
    with pytest.raises(MultilabelLossError) as err:
        options(**bad)
    assert str(err.value) == message


@pytest.mark.parametrize("edge", [
    {"batch_size": 1, "threads": 1, "prefetch": 1, "num_classes": 1},
    {"new_height": 0, "new_width": 0, "crop_size": 0, "seed": 0},
    {"new_height": 12, "new_width": 10, "crop_size": 10},
    {"new_height": 10, "new_width": 12, "crop_size": 10},
    {"label_format": "indices", "max_labels": 1},
    {"rank": 0}, {"rank": 1, "world_size": 2}, {"world_size": 1},
    {"num_classes": None, "class_names": "names.txt"},
    {"mean_value": [1, 2, 3]}, {"mean_value": [-104.0], "is_color": False},
    {"shuffle": True}, {"shuffle": False}, {"mirror": True, "is_color": False, "skip_bad_images": True},
    {"crop_size": 1000},                                  # no resize: checked against each image when read
])
def test_values_at_each_limit_are_accepted(edge):
    made = options(**edge)
    for key, value in edge.items():
        if key != "mean_value":
            assert getattr(made, key) == value


def test_defaults_and_normalized_values():
    made = options(mean_value=104, scale=2)
    assert made.mean_value == (104.0,) and made.scale == 2.0 and isinstance(made.scale, float)
    assert options(mean_value=[1, 2.5, 3]).mean_value == (1.0, 2.5, 3.0)
    defaults = options()
    assert (defaults.batch_size, defaults.label_format, defaults.shuffle, defaults.threads, defaults.prefetch,
            defaults.mean_value, defaults.scale, defaults.rank, defaults.world_size) == \
        (32, "dense", None, 2, 3, None, 1.0, None, None)


def test_label_width_is_k_for_indices_and_c_for_dense():
    assert options(label_format="indices", max_labels=4).label_width(5) == 4
    assert options().label_width(7) == 7


def test_from_param_str_parses_json_and_names_the_owner():
    made = ImageDataOptions.from_param_str('{"source": "a.txt", "num_classes": 3, "crop_size": 8}', "data")
    assert (made.source, made.num_classes, made.crop_size) == ("a.txt", 3, 8)
    with pytest.raises(MultilabelLossError) as err:
        ImageDataOptions.from_param_str('{"num_classes": 3}', "data")
    assert str(err.value).startswith("data: source (the list file) is required")


def test_unknown_keys_name_each_layer_that_takes_them():
    with pytest.raises(MultilabelLossError) as err:
        ImageDataOptions.from_param_str('{"source": "a", "num_classes": 2, "normalization": "full"}', "L")
    assert str(err.value).endswith(
        "; normalization is an option of SoftmaxMultilabelLossLayer (core function softmax_multilabel_forward), "
        "not of MultilabelImageDataLayer; normalization is an option of SigmoidMultilabelLossLayer (core function "
        "sigmoid_multilabel_forward), not of MultilabelImageDataLayer; normalization is an option of ZLPRLossLayer "
        "(core function zlpr_forward), not of MultilabelImageDataLayer")


@pytest.mark.parametrize("bad,message", [
    ({"gamma": 0.5, "gamma_neg": 0.5}, "L: gamma = 0.5 sets the focusing of positives and negatives alike; give "
     "either gamma, or gamma_pos and gamma_neg (got 0.0 and 0.5), not both"),
    ({"gamma": 2, "gamma_pos": 0.5}, "L: gamma = 2.0 sets the focusing of positives and negatives alike; give "
     "either gamma, or gamma_pos and gamma_neg (got 0.5 and 0.0), not both"),
    ({"clip": 1.0}, "L: clip must be in [0.0, 1.0), got 1.0"),
    ({"clip": -0.1}, "L: clip must be in [0.0, 1.0), got -0.1"),
    ({"gamma_neg": -1}, "L: gamma_neg must be in [0.0, inf], got -1"),
    ({"alpha": 1.5}, "L: alpha (-1 = off) must be in [0.0, 1.0], got 1.5"),
])
def test_sigmoid_focusing_options_exact_messages(bad, message):
    with pytest.raises(MultilabelLossError) as err:
        SigmoidOptions(owner="L", **bad)
    assert str(err.value) == message


def test_sigmoid_numbers_become_floats():
    """Integers in the options (JSON 0, 2) are stored as floats."""
    made = SigmoidOptions(owner="L", pos_weight=2, gamma_neg=4, gamma_pos=1, clip=0, alpha=0, ignore_label=-1)
    values = [made.pos_weight, made.gamma_neg, made.gamma_pos, made.clip, made.alpha, made.ignore_label]
    assert values == [2.0, 4.0, 1.0, 0.0, 0.0, -1.0]
    assert all(type(value) is float for value in values)
    assert SigmoidOptions(owner="L", gamma=0.5).gamma == 0.5           # gamma alone, below 1
