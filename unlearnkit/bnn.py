"""A Bayesian multilayer perceptron for classification, on a flat parameter vector.

Every parameter of the network (weights and biases of every layer) lives in one vector
``theta [d]``; a batch of parameter vectors ``theta [S, d]`` is ``S`` networks evaluated
at once (Monte Carlo samples of a belief, chains of a sampler). The layout is layer by
layer, the weight matrix ``W_l [in, out]`` (row-major) followed by the bias ``b_l [out]``.
Hidden layers use ``tanh``; the output is a softmax over the classes, so that

    log p(y | x, theta) = log softmax(f_theta(x))_y,

and the prior is an isotropic Gaussian ``N(0, prior_scale^2 I)``. Functions are compiled
once per model with ``tf.function`` (shapes ``[None, d]`` and ``[None, D]``).

:func:`load_digits_split` gives scikit-learn's 8x8 digits (shipped with scikit-learn), split
into a training and a test set and standardised with the training set's statistics.
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_float64,
    check_positive_int,
    check_positive_number,
    check_theta,
    check_unit_interval,
)
from unlearnkit.seeds import Seed, sanitize_seed

tfd = tfp.distributions

__all__ = ["BayesianMLP", "Digits", "load_digits_split"]


class Digits(NamedTuple):
    """The digits split: ``X_train [n, 64]``, ``y_train [n]``, ``X_test [k, 64]``, ``y_test [k]``.

    Inputs are float64 and standardised (training mean 0, standard deviation 1 per pixel;
    pixels constant on the training set are only centred); labels are int32 in 0..9, and
    ``images_*`` [n, 8, 8] keep the raw grey levels (0..16) for plotting.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    images_train: np.ndarray
    images_test: np.ndarray


def load_digits_split(test_fraction: float = 0.25, *, seed: int = 0) -> Digits:
    """scikit-learn's digits (1,797 images of 8x8 pixels), split and standardised.

    Args:
        test_fraction: share of the images held out, in (0, 1), stratified by class.
        seed: integer seed of the split.

    Returns:
        A :class:`Digits`.
    """
    # Imported here: nothing else in unlearnkit needs scikit-learn at import time.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = check_unit_interval(test_fraction, "test_fraction")
    if test_fraction in (0.0, 1.0):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    data = load_digits()
    index = np.arange(len(data.target))
    train, test = train_test_split(
        index, test_size=test_fraction, random_state=int(seed), stratify=data.target
    )
    X = data.data.astype(np.float64)
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X = (X - mean) / std
    y = data.target.astype(np.int32)
    return Digits(X[train], y[train], X[test], y[test], data.images[train], data.images[test])


class BayesianMLP:
    """A tanh multilayer perceptron with a softmax output and a Gaussian prior.

    Args:
        layer_sizes: ``(D, h_1, ..., C)``: inputs, hidden widths, classes (at least two
            entries, each positive; e.g. ``(64, 32, 10)``).
        prior_scale: standard deviation of the isotropic Gaussian prior on ``theta``.

    Attributes:
        layer_sizes: as given, a tuple.
        dim: ``d``, the number of parameters.
        num_classes: ``C``.
        prior: the prior, a ``tfd.MultivariateNormalDiag`` [d].
    """

    def __init__(self, layer_sizes: Sequence[int] = (64, 32, 10), *, prior_scale: float = 1.0) -> None:
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
            raise TypeError(f"layer_sizes must be a sequence of ints, got {type(layer_sizes).__name__}")
        sizes = tuple(check_positive_int(s, "layer_sizes") for s in layer_sizes)
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least inputs and classes, got {sizes}")
        self.layer_sizes = sizes
        self.prior_scale = check_positive_number(prior_scale, "prior_scale")
        self.num_classes = sizes[-1]
        self._shapes: List[Tuple[int, int]] = list(zip(sizes[:-1], sizes[1:]))
        self.dim = sum(i * o + o for i, o in self._shapes)
        self.prior = tfd.MultivariateNormalDiag(
            tf.zeros([self.dim], tf.float64), tf.fill([self.dim], tf.constant(self.prior_scale, tf.float64))
        )
        theta_spec = tf.TensorSpec([None, self.dim], tf.float64)
        x_spec = tf.TensorSpec([None, sizes[0]], tf.float64)
        self._logits = tf.function(self._logits_graph, input_signature=[theta_spec, x_spec])
        self._log_likelihood = tf.function(
            self._log_likelihood_graph,
            input_signature=[theta_spec, x_spec, tf.TensorSpec([None], tf.int32)],
        )

    def __repr__(self) -> str:
        return f"BayesianMLP(layer_sizes={self.layer_sizes}, prior_scale={self.prior_scale})"

    # ------------------------------------------------------------------ layout

    def unflatten(self, theta: tf.Tensor) -> List[Tuple[tf.Tensor, tf.Tensor]]:
        """The layers of a batch of networks: ``theta [S, d] -> [(W [S, in, out], b [S, out])]``."""
        layers, start = [], 0
        for i, o in self._shapes:
            W = tf.reshape(theta[:, start : start + i * o], [-1, i, o])
            start += i * o
            layers.append((W, theta[:, start : start + o]))
            start += o
        return layers

    def flatten(self, layers: Sequence[Tuple[object, object]]) -> tf.Tensor:
        """The inverse of :meth:`unflatten`: ``[(W [S, in, out], b [S, out])] -> theta [S, d]``."""
        if len(layers) != len(self._shapes):
            raise ValueError(f"layers must hold {len(self._shapes)} (W, b) pairs, got {len(layers)}")
        parts = []
        for (W, b), (i, o) in zip(layers, self._shapes):
            W = as_float64(W, "W", ndim=3, shape=[None, i, o])
            b = as_float64(b, "b", ndim=2, shape=[None, o])
            parts += [tf.reshape(W, [-1, i * o]), b]
        return tf.concat(parts, axis=1)

    def initial(self, num: int = 1, *, seed: Seed = None) -> tf.Tensor:
        """Random starting points ``[num, d]``: Glorot-scaled normal weights, zero biases."""
        num = check_positive_int(num, "num")
        parts, seed = [], sanitize_seed(seed)
        for k, (i, o) in enumerate(self._shapes):
            layer_seed = tf.random.experimental.stateless_fold_in(seed, k)
            W = tf.random.stateless_normal([num, i * o], layer_seed, dtype=tf.float64)
            parts += [W * np.sqrt(2.0 / (i + o)), tf.zeros([num, o], tf.float64)]
        return tf.concat(parts, axis=1)

    # ------------------------------------------------------------------ the model

    def _forward(self, theta: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """Logits ``[S, n, C]`` of network ``s`` at its own inputs ``h [S, n, D]``."""
        layers = self.unflatten(theta)
        for k, (W, b) in enumerate(layers):
            h = tf.matmul(h, W) + b[:, None, :]
            if k < len(layers) - 1:
                h = tf.tanh(h)
        return h

    def _logits_graph(self, theta: tf.Tensor, X: tf.Tensor) -> tf.Tensor:
        h = tf.broadcast_to(X, tf.concat([tf.shape(theta)[:1], tf.shape(X)], 0))  # [S, n, D]
        return self._forward(theta, h)

    def _log_probability_of(self, logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """``log softmax(logits)_y``: ``[S, n, C]`` logits, labels ``[n]`` or ``[S, n]`` -> ``[S, n]``."""
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        return tf.reduce_sum(log_probs * tf.one_hot(y, self.num_classes, dtype=tf.float64), -1)

    def _log_likelihood_graph(self, theta: tf.Tensor, X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return self._log_probability_of(self._logits_graph(theta, X), y)

    def _check(self, theta: object, X: object) -> Tuple[tf.Tensor, tf.Tensor]:
        theta = check_theta(theta, self.dim)
        X = as_float64(X, "X", ndim=2, shape=[None, self.layer_sizes[0]])
        return theta, X

    def _labels(self, y: object, n: int) -> tf.Tensor:
        array = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y)
        if array.dtype.kind not in "iu":
            raise TypeError(f"y must hold integer class labels, got dtype {array.dtype}")
        if array.shape != (n,):
            raise ValueError(f"y must have shape [{n}] (one label per row of X), got {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= self.num_classes):
            raise ValueError(f"y must hold labels in 0..{self.num_classes - 1}")
        return tf.constant(array.astype(np.int32))

    def logits(self, theta: object, X: object) -> tf.Tensor:
        """Class scores of every network at every input: ``theta [S, d], X [n, D] -> [S, n, C]``."""
        return self._logits(*self._check(theta, X))

    def class_probabilities(self, theta: object, X: object) -> tf.Tensor:
        """Softmax class probabilities ``[S, n, C]``."""
        return tf.nn.softmax(self.logits(theta, X), axis=-1)

    def log_likelihood(self, theta: object, X: object, y: object) -> tf.Tensor:
        """Per-example ``log p(y_i | x_i, theta_s)``: ``theta [S, d], X [n, D], y [n] -> [S, n]``.

        Differentiable in ``theta`` (compiled, shapes ``[None, d]``, ``[None, D]``).
        """
        theta, X = self._check(theta, X)
        return self._log_likelihood(theta, X, self._labels(y, int(X.shape[0])))

    def log_prior(self, theta: object) -> tf.Tensor:
        """``log p(theta_s)`` under ``N(0, prior_scale^2 I)``: ``theta [S, d] -> [S]``."""
        return self.prior.log_prob(check_theta(theta, self.dim))

    def data_log_likelihood(self, X: object, y: object):
        """``theta [S, d] -> sum_i log p(y_i | x_i, theta) [S]`` with the data bound (compiled).

        The data are checked once, here; the returned callable is a ``tf.function`` of
        ``theta`` alone, suitable for the variational fits and unlearning functions.
        """
        X = as_float64(X, "X", ndim=2, shape=[None, self.layer_sizes[0]])
        labels = self._labels(y, int(X.shape[0]))

        @tf.function(input_signature=[tf.TensorSpec([None, self.dim], tf.float64)])
        def summed(theta: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(self._log_likelihood_graph(theta, X, labels), axis=-1)

        return summed

    def per_example_log_likelihood(self, X: object, y: object):
        """``theta [S, d] -> log p(y_i | x_i, theta) [S, n]`` with the data bound (compiled)."""
        X = as_float64(X, "X", ndim=2, shape=[None, self.layer_sizes[0]])
        labels = self._labels(y, int(X.shape[0]))

        @tf.function(input_signature=[tf.TensorSpec([None, self.dim], tf.float64)])
        def per_example(theta: tf.Tensor) -> tf.Tensor:
            return self._log_likelihood_graph(theta, X, labels)

        return per_example

    def energy(self, X: object, y: object):
        """``theta [d] -> -sum_i log p(y_i | x_i, theta) - log p(theta)`` (scalar; compiled).

        The energy of :func:`unlearnkit.bif.influence_unlearn` (one parameter vector, not a
        batch). Build the erased energy with the erased rows and ``prior=False``.
        """
        return self._energy(X, y, prior=True)

    def erased_energy(self, X: object, y: object):
        """``theta [d] -> -sum_i log p(y_i | x_i, theta)`` (scalar, no prior; compiled)."""
        return self._energy(X, y, prior=False)

    def _energy(self, X: object, y: object, prior: bool):
        summed = self.data_log_likelihood(X, y)
        variance = self.prior_scale**2

        @tf.function(input_signature=[tf.TensorSpec([self.dim], tf.float64)])
        def energy(theta: tf.Tensor) -> tf.Tensor:
            value = -summed(theta[None, :])[0]
            if prior:
                value += 0.5 * tf.reduce_sum(theta**2) / variance
            return value

        return energy

    def sampler_energy(self, theta: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
        """Per-point energy for :class:`unlearnkit.bif.SGLD`: ``-log p(y | x, theta)``.

        ``points`` hold the inputs with the label as last column (``[n, D + 1]``, or a
        minibatch per chain ``[C, b, D + 1]``); ``theta [C, d]``; returns ``[C, n]`` or
        ``[C, b]``. Traceable (the sampler compiles it).
        """
        D = self.layer_sizes[0]
        if points.shape.rank == 2:
            X, y = points[:, :D], tf.cast(points[:, D], tf.int32)
            return -self._log_likelihood_graph(theta, X, y)
        X, y = points[:, :, :D], tf.cast(points[:, :, D], tf.int32)  # [C, b, D], [C, b]
        return -self._log_probability_of(self._forward(theta, X), y)

    def prior_energy(self, theta: tf.Tensor) -> tf.Tensor:
        """``-log p(theta)`` up to a constant, ``theta [C, d] -> [C]`` (for the samplers)."""
        return 0.5 * tf.reduce_sum(theta**2, axis=-1) / self.prior_scale**2
