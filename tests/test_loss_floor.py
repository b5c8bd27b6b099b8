"""docs/losses.md's loss floor: the softmax loss with 1/M targets is at least the mean of log M, reached at p = t."""
import numpy as np
import pytest

from softmax_multilabel_layer import softmax_multilabel_loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_loss_floor_is_mean_log_m(dtype):
    rng = np.random.default_rng(3)
    n, c = 300, 20
    labels = np.zeros((n, c), dtype)
    m = rng.integers(0, 4, size=n)                           # 0 to 3 positives; 0 adds 0 to the loss
    for i, k in enumerate(m):
        labels[i, rng.choice(c, size=k, replace=False)] = 1
    floor = np.log(m[m > 0]).sum() / n                       # the docs' formula, "batch_size"
    t = labels / np.maximum(labels.sum(axis=1, keepdims=True), 1)
    at_targets = np.where(t > 0, np.log(np.maximum(t, 1e-30)), -60).astype(dtype)   # softmax(s) = t
    loss, grad = softmax_multilabel_loss(at_targets, labels)
    assert abs(loss - floor) < (1e-5 if dtype == np.float32 else 1e-10), (loss, floor)
    assert np.abs(grad).max() < 1e-6                          # a minimum: zero gradient
    # Trained-like scores (confident, correct ranking) stay above the floor, and so does any perturbation.
    confident = (8 * labels + rng.normal(0, 0.5, size=labels.shape)).astype(dtype)
    assert softmax_multilabel_loss(confident, labels)[0] > floor + 1e-3
    for _ in range(20):
        perturbed = (at_targets + rng.normal(0, 0.1, size=labels.shape)).astype(dtype)
        assert softmax_multilabel_loss(perturbed, labels)[0] > floor
    assert floor > 0.4                                        # far from 0: the point of the docs section
