"""Results do not depend on the BLAS thread count or on how many times the net has run."""
import os
import subprocess
import sys

SCRIPT = r"""
import hashlib, numpy as np
from softmax_multilabel_layer.losses import functional as F
rng = np.random.default_rng(0)
digest = hashlib.sha256()
for shape in [(64, 17000), (256, 1000), (4096, 20), (32, 21, 14, 14)]:
    scores = rng.normal(size=shape).astype(np.float32) * 5
    labels = (rng.random(shape) < 0.002).astype(np.float32)
    real = rng.random(shape).astype(np.float32)
    for y in (labels, real):
        ws = F.Workspace()
        for _ in range(2):
            loss, ctx = F.softmax_multilabel_forward(scores, y, workspace=ws)
            digest.update(np.float64(loss).tobytes()); digest.update(F.softmax_multilabel_backward(ctx, 3.0).tobytes())
        loss, grad = F.sigmoid_multilabel_loss(scores, np.minimum(real, 1), loss_weight=3.0)
        digest.update(np.float64(loss).tobytes()); digest.update(grad.tobytes())
print(digest.hexdigest())
"""


def run_with_threads(threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
                            timeout=300)
    return result.stdout.strip()


def test_bit_identical_for_one_and_two_blas_threads():
    one, two = run_with_threads(1), run_with_threads(2)
    assert len(one) == 64 and one == two
