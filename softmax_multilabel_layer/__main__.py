"""``python -m softmax_multilabel_layer``: the ``softmax-multilabel`` command."""
import sys

from .cli import main

sys.exit(main())
