"""A faithful transcription of the 2018 blog's multi-label softmax loss layer, flaws included.

This is the layer the project exists to replace (README, "Why this exists").
It is kept only as a known-bad reference: ``tests/test_gradcheck.py`` shows that
the gradient checker catches its wrong gradient, and ``scripts/benchmark.py``
times it. Never use it for training.

What it computes, per sample r with M_r = number of non-zero labels:

* forward: ``scores -= max(scores)`` **in place on bottom[0].data**, p = softmax,
  loss = mean_r sum_{c: y_rc != 0} -log(p_rc) * y_rc / M_r, looping over
  samples and classes in Python;
* backward: delta = p, then ``p_rc - 1/M_r`` on every positive class whatever
  its label value, divided by N.

Its flaws, kept on purpose: the Python loops; ``log`` of the softmax (inf
once a positive's probability underflows); the in-place write to the scores;
a backward that is exact only for binary labels (the true gradient is
(sum_c y_rc/M_r) p_rc - y_rc/M_r); ``1 / 0`` on a sample with no positive
label (ZeroDivisionError); and ``top[0].diff`` (``loss_weight``) ignored.
"""
import caffe
import numpy as np


class BlogSoftmaxLossLayer(caffe.Layer):

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance (inference and labels).")

    def reshape(self, bottom, top):
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        labels = bottom[1].data
        scores = bottom[0].data
        scores -= np.max(scores, axis=1, keepdims=True)          # writes to the bottom blob
        exp_scores = np.exp(scores)
        probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
        logprobs = np.zeros([bottom[0].num, 1])
        for r in range(bottom[0].num):
            scale_factor = 1 / float(np.count_nonzero(labels[r, :]))
            for c in range(len(labels[r, :])):
                if labels[r, c] != 0:
                    logprobs[r] += -np.log(probs[r, c]) * labels[r, c] * scale_factor
        self.diff[...] = probs
        top[0].data[...] = np.sum(logprobs) / bottom[0].num

    def backward(self, top, propagate_down, bottom):
        delta = self.diff
        labels = bottom[1].data
        for r in range(bottom[0].num):
            scale_factor = 1 / float(np.count_nonzero(labels[r, :]))
            for c in range(len(labels[r, :])):
                if labels[r, c] != 0:
                    delta[r, c] = scale_factor * (delta[r, c] - 1) + (1 - scale_factor) * delta[r, c]
        bottom[0].diff[...] = delta / bottom[0].num
