"""The ``softmax-multilabel`` command (also ``python -m softmax_multilabel_layer``).

Subcommands: ``gradcheck`` (check any layer's backward against central
differences, see :mod:`.gradcheck`) and ``prototxt`` (print a validated layer
block for our losses, see :mod:`.netspec`). Exit status: 0 success, 1 a
gradient check that ran and failed, 2 a wrong argument or a net that cannot be
checked (one line on stderr).
"""
import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from softmax_multilabel_layer import __version__
from softmax_multilabel_layer.data import convert
from softmax_multilabel_layer.params import SigmoidOptions, SoftmaxOptions, TwoWayOptions, ZLPROptions

PROG = "softmax-multilabel"
EXAMPLES = """examples:
  %(prog)s gradcheck train.prototxt --layer loss --fill label=bernoulli:0.3
  %(prog)s gradcheck net.prototxt --layer fc7 --weights model.caffemodel --phase test
  %(prog)s prototxt --loss softmax --normalization valid
  %(prog)s prototxt --loss sigmoid --gamma 2 --alpha 0.25 --bottom fc8 --bottom label
  %(prog)s convert train.txt --out train_h5 --format hdf5 --num-classes 20
  %(prog)s deploy train_val.prototxt -o deploy.prototxt
  %(prog)s deploy train_val.prototxt --weights snap_iter_3000.caffemodel --out model/
  %(prog)s evaluate model/ --list val.txt --root-folder images/ --calibrate
  %(prog)s evaluate model/ --list test.txt --root-folder images/ --json test.json
  %(prog)s evaluate --net train_val.prototxt --weights snap_iter_3000.caffemodel --iters 20
  %(prog)s predict model/ a.jpg b.png photos/ --rule top-k:3
"""
GRADCHECK_EXAMPLES = """examples:
  %(prog)s train.prototxt --layer loss
      the net's data layers fill the bottoms; checks the loss layer's first bottom
  %(prog)s net.prototxt --layer loss --fill scores=gaussian:3 --fill labels=bernoulli:0.2
      Input blobs: N(0, 1) unless --fill says otherwise
  %(prog)s net.prototxt --layer loss --fill label=randint:0:10
      integer class labels, e.g. for Caffe's SoftmaxWithLoss
  %(prog)s deploy.prototxt --layer relu1 --kink-range 0.01 --phase test --weights model.caffemodel
  %(prog)s train.prototxt --layer fc8 --params
      also the layer's weights and biases

fill specs: gaussian[:STD], uniform:LO:HI, randint:LO:HI, bernoulli:P, constant:V, or FILE.npy
exit status: 0 passed, 1 failed (or tested nothing: every gradient was 0), 2 bad arguments or a net that \
cannot be checked
"""
PROTOTXT_EXAMPLES = """examples:
  %(prog)s --loss softmax
  %(prog)s --loss softmax --label-format indices --bottom fc8 --bottom label --bottom label_weight
  %(prog)s --loss sigmoid --gamma 2 --alpha 0.25 --pos-weight '[1, 2, 3]'
  %(prog)s --loss zlpr --label-format indices
  %(prog)s --loss two_way --tp 4 --tn 1
Option values are JSON (numbers, lists, strings); a bare word is a string.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print("%s %s" % (PROG, __version__))
        print(caffe_version())
        parser.exit(0)


def caffe_version() -> str:
    """One line naming the Caffe that ``import caffe`` finds, or why none was found."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe
    except Exception as exc:       # pycaffe missing or broken: say so, --version still works
        return "Caffe: not importable (%s: %s); run `make setup`" % (type(exc).__name__, exc)
    python_layer = "with" if "Python" in caffe.layer_type_list() else "WITHOUT"
    return "Caffe %s (%s Python layers) at %s" % (getattr(caffe, "__version__", "unknown version"),
                                                python_layer, os.path.dirname(caffe.__file__))


def _json_value(text: str) -> Any:
    """An option value: JSON, or a bare word taken as a string (``--normalization valid``).

    Text that starts like a JSON number, list, object or string must be valid JSON.
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        if text.strip()[:1] in '[{"-.0123456789':
            raise argparse.ArgumentTypeError("%r is not valid JSON (%s); expected e.g. 2, [1, 2, 3] or \"valid\""
                                             % (text, exc)) from None
        return text


def _blob_spec(text: str) -> tuple[str, str]:
    blob, sep, spec = text.partition("=")
    if not sep or not blob or not spec:
        raise argparse.ArgumentTypeError("expected BLOB=SPEC, got %r" % text)
    return blob, spec


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Tools for Caffe's multi-label loss layers of softmax_multilabel_layer: "
                     "convert (image lists to HDF5 or LMDB), evaluate (multi-label metrics over a whole set), "
                     "deploy (a deploy net, or a model folder: the net, its weights and how its images are "
                     "prepared), predict (label sets for images from a model folder), gradcheck "
                     "(numeric gradients of any layer) and prototxt (validated layer blocks). "
                     "`softmax-multilabel COMMAND --help` describes each.",
                     epilog=EXAMPLES % {"prog": PROG}, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction, help="print this project's version and the Caffe found")
    sub = parser.add_subparsers(dest="command", metavar="{gradcheck,prototxt,convert,evaluate,predict,deploy}",
                                parser_class=_Parser)
    sub.required = True

    g = sub.add_parser("gradcheck", help="check one layer's backward against central differences",
                       description="Check one layer of a net (C++ or Python) like Caffe's C++ GradientChecker: the "
                       "layer's backward against central differences of its loss (times loss_weight) or of a "
                       "random projection of its tops.",
                       epilog=GRADCHECK_EXAMPLES % {"prog": PROG + " gradcheck"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("net", help="the net's prototxt")
    g.add_argument("--layer", required=True, help="name of the layer to check")
    g.add_argument("--weights", help="a .caffemodel to load (default: the net's fillers)")
    g.add_argument("--phase", choices=("train", "test"), default="train", help="net phase (default: train)")
    g.add_argument("--bottom", type=int, action="append", metavar="K",
                   help="check bottom K (repeatable; default: bottom 0 of a loss layer, else every bottom)")
    g.add_argument("--params", action="store_true",
                   help="also check the layer's parameter blobs (weights, biases), as Caffe's checker does")
    g.add_argument("--fill", type=_blob_spec, action="append", default=[], metavar="BLOB=SPEC",
                   help="how to fill an Input blob (repeatable; default gaussian)")
    g.add_argument("--seed", type=int, default=0, help="seed of the fills, the projection and the subset (default 0)")
    g.add_argument("--stepsize", type=float, default=1e-2, help="finite-difference step (default 1e-2, as Caffe)")
    g.add_argument("--threshold", type=float, default=1e-2, help="relative error threshold (default 1e-2, as Caffe)")
    g.add_argument("--floor", type=float, default=1.0,
                   help="errors are relative to max(|analytic|, |numeric|, FLOOR) (default 1, as Caffe)")
    g.add_argument("--kink", type=float, default=0.0, help="skip bottom values near +-KINK (with --kink-range)")
    g.add_argument("--kink-range", type=float, default=-1.0, help="width around the kink; < 0 = off (default)")
    g.add_argument("--max-elements", type=int, default=1000,
                   help="check a seeded random subset of this many elements per bottom when larger "
                        "(default 1000; 0 = all)")

    p = sub.add_parser("prototxt", help="print a validated layer block for our losses",
                       description="Print a ready `layer { ... }` block for SoftmaxMultilabelLossLayer, "
                       "SigmoidMultilabelLossLayer, ZLPRLossLayer or TwoWayLossLayer; the options are validated as the "
                       "layer validates them.",
                       epilog=PROTOTXT_EXAMPLES % {"prog": PROG + " prototxt"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # The keys of tools.netspec.LOSSES (not imported here: it imports caffe, and --version works without it).
    loss_options = (("softmax", SoftmaxOptions), ("sigmoid", SigmoidOptions), ("zlpr", ZLPROptions),
                    ("two_way", TwoWayOptions))
    p.add_argument("--loss", required=True, choices=[loss for loss, _ in loss_options], help="which loss")
    p.add_argument("--name", default="loss", help='layer name (default "loss")')
    p.add_argument("--bottom", action="append", metavar="BLOB",
                   help="bottom blob, repeatable (default: scores, labels[, label_weights with softmax "
                        "indices labels])")
    p.add_argument("--top", default="loss", help='top blob (default "loss")')
    p.add_argument("--loss-weight", type=float, default=1.0, help="loss_weight (default 1; required by Caffe)")
    options = p.add_argument_group("layer options (docs/losses.md)")
    owners: dict[str, list[str]] = {}
    for loss, options_class in loss_options:
        for key in options_class.keys():
            owners.setdefault(key, []).append(loss)
    for key, losses in owners.items():
        flags = ["--" + key.replace("_", "-")] + (["--" + key] if "_" in key else [])
        options.add_argument(*flags, dest="opt_" + key, type=_json_value, metavar="VALUE",
                             help="%s loss" % ", ".join(losses))
    convert.add_parser(sub)
    from softmax_multilabel_layer.evaluation.deploy import (
        add_deploy_parser,  # evaluate, predict, deploy: each module registers its subcommand
    )
    from softmax_multilabel_layer.evaluation.evaluate import add_evaluate_parser
    from softmax_multilabel_layer.evaluation.predict import add_predict_parser
    for add in (add_evaluate_parser, add_predict_parser, add_deploy_parser):
        add(sub)
    return parser


def _gradcheck(args: argparse.Namespace) -> int:
    from softmax_multilabel_layer.tools.gradcheck import check_layer_gradient, format_report
    report = check_layer_gradient(args.net, args.layer, bottoms=args.bottom, weights=args.weights, phase=args.phase,
                                  fills=dict(args.fill), seed=args.seed, stepsize=args.stepsize,
                                  threshold=args.threshold, floor=args.floor, kink=args.kink,
                                  kink_range=args.kink_range, max_elements=args.max_elements,
                                  check_params=args.params)
    print(format_report(report))
    return 0 if report.passed else 1


def _prototxt(args: argparse.Namespace) -> int:
    from softmax_multilabel_layer.tools.netspec import layer_prototxt
    params = {k[len("opt_"):]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    label_weights = args.loss == "softmax" and params.get("label_format") == "indices"   # only softmax takes them
    bottoms = args.bottom or (("scores", "labels", "label_weights") if label_weights else ("scores", "labels"))
    sys.stdout.write(layer_prototxt(args.loss, bottoms=tuple(bottoms), top=args.top, name=args.name,
                                    loss_weight=args.loss_weight, **params))
    return 0


# Names of internal functions that start the messages of errors raised for the CLI.
INTERNAL_OWNERS = ("layer_prototxt", "python_param")


def _user_message(text: str) -> str:
    """The last line of an error, without an internal function name the user never called."""
    lines = text.strip().splitlines()
    message = lines[-1] if lines else ""
    owner, sep, rest = message.partition(": ")
    return rest if sep and owner in INTERNAL_OWNERS else message


def main(argv: Sequence[str] | None = None) -> int:
    # glog reads this once, when pycaffe first loads (even `from caffe.proto import caffe_pb2` loads it): set it
    # before anything imports caffe, so an error is one line, not Caffe's INFO lines and then the line.
    os.environ.setdefault("GLOG_minloglevel", "2")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
        args.inputs += extra            # `predict MODEL/ --rule top-k:2 a.jpg`: images after options too
    elif extra:
        parser.error("unrecognized arguments: %s" % " ".join(extra))
    run = {"gradcheck": _gradcheck, "prototxt": _prototxt, "convert": convert.run}.get(args.command) or args.run
    try:
        return run(args)
    except (ValueError, OSError, ImportError) as exc:
        # MultilabelLossError and GradcheckError are ValueErrors; GradcheckError also carries a layer's own exception.
        message = _user_message(str(exc)) or type(exc).__name__
        sys.stderr.write("%s %s: error: %s\n" % (PROG, args.command, message))
        return 2


if __name__ == "__main__":
    sys.exit(main())
