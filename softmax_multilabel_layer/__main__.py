"""``python -m softmax_multilabel_layer``: the ``softmax-multilabel`` command."""
import sys

from softmax_multilabel_layer.cli import main

sys.exit(main())
