"""Tests of unlearnkit.bnn: the Bayesian multilayer perceptron on a flat parameter vector."""

import numpy as np
import pytest
import tensorflow as tf

from unlearnkit.bnn import BayesianMLP, load_digits_split


def _numpy_log_likelihood(model, theta, X, y):
    out = []
    for t in theta:
        h, start = X, 0
        for k, (i, o) in enumerate(zip(model.layer_sizes[:-1], model.layer_sizes[1:])):
            W = t[start : start + i * o].reshape(i, o)
            start += i * o
            b = t[start : start + o]
            start += o
            h = h @ W + b
            if k < len(model.layer_sizes) - 2:
                h = np.tanh(h)
        h = h - h.max(axis=1, keepdims=True)
        log_probs = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
        out.append(log_probs[np.arange(len(y)), y])
    return np.array(out)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    model = BayesianMLP((4, 3, 2), prior_scale=0.7)
    X = rng.normal(size=(6, 4))
    y = rng.integers(0, 2, size=6).astype(np.int32)
    return model, X, y


def test_dimension_of_the_chapter_network():
    assert BayesianMLP((64, 32, 10)).dim == 64 * 32 + 32 + 32 * 10 + 10 == 2410


def test_shapes_and_known_values(small):
    model, X, y = small
    theta = model.initial(3, seed=1)
    assert model.logits(theta, X).shape == (3, 6, 2)
    probs = model.class_probabilities(theta, X).numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
    values = model.log_likelihood(theta, X, y).numpy()
    assert values.shape == (3, 6)
    np.testing.assert_allclose(values, _numpy_log_likelihood(model, theta.numpy(), X, y), atol=1e-12)
    np.testing.assert_allclose(
        model.data_log_likelihood(X, y)(theta).numpy(), values.sum(1), atol=1e-12
    )
    np.testing.assert_allclose(model.per_example_log_likelihood(X, y)(theta).numpy(), values)
    prior = model.log_prior(theta).numpy()
    expected = (
        -0.5 * (theta.numpy() ** 2).sum(1) / 0.49 - model.dim * np.log(0.7 * np.sqrt(2 * np.pi))
    )
    np.testing.assert_allclose(prior, expected)


def test_flatten_inverts_unflatten(small):
    model, _, _ = small
    theta = model.initial(2, seed=3) + 0.1
    np.testing.assert_array_equal(model.flatten(model.unflatten(theta)).numpy(), theta.numpy())
    with pytest.raises(ValueError, match="layers"):
        model.flatten(model.unflatten(theta)[:1])


def test_energy_gradient_matches_finite_differences(small):
    model, X, y = small
    energy = model.energy(X, y)
    theta = model.initial(seed=4)[0] + 0.05
    with tf.GradientTape() as tape:
        tape.watch(theta)
        value = energy(theta)
    gradient = tape.gradient(value, theta).numpy()
    h = 1e-6
    numeric = np.array(
        [
            (energy(theta + h * e).numpy() - energy(theta - h * e).numpy()) / (2 * h)
            for e in np.eye(model.dim)
        ]
    )
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-7)
    erased = model.erased_energy(X[:2], y[:2])
    expected = -model.log_likelihood(theta[None], X[:2], y[:2]).numpy().sum()
    np.testing.assert_allclose(erased(theta).numpy(), expected)


def test_sampler_energy_full_and_minibatch(small):
    model, X, y = small
    theta = model.initial(2, seed=5)
    points = tf.constant(np.concatenate([X, y[:, None]], axis=1))
    full = model.sampler_energy(theta, points).numpy()
    np.testing.assert_allclose(full, -model.log_likelihood(theta, X, y).numpy())
    batch = tf.stack([points[:3], points[3:]])  # chain 0 sees rows 0-2, chain 1 rows 3-5
    np.testing.assert_allclose(
        model.sampler_energy(theta, batch).numpy(), np.stack([full[0, :3], full[1, 3:]])
    )
    np.testing.assert_allclose(
        model.prior_energy(theta).numpy(), 0.5 * (theta.numpy() ** 2).sum(1) / 0.49
    )


def test_initial_is_seeded(small):
    model, _, _ = small
    np.testing.assert_array_equal(model.initial(2, seed=7), model.initial(2, seed=7))
    assert not np.array_equal(model.initial(2, seed=7), model.initial(2, seed=8))


def test_bad_inputs(small):
    model, X, y = small
    theta = model.initial(1, seed=0)
    with pytest.raises(TypeError, match="layer_sizes"):
        BayesianMLP("64-32")
    with pytest.raises(ValueError, match="layer_sizes"):
        BayesianMLP((5,))
    with pytest.raises(ValueError, match="layer_sizes"):
        BayesianMLP((5, 0, 2))
    with pytest.raises(ValueError, match="prior_scale"):
        BayesianMLP((2, 2), prior_scale=0.0)
    with pytest.raises(TypeError, match="theta"):
        model.log_likelihood(tf.cast(theta, tf.float32), X, y)
    with pytest.raises(ValueError, match="theta"):
        model.log_likelihood(theta + np.nan, X, y)
    with pytest.raises(ValueError, match="X"):
        model.log_likelihood(theta, X[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        model.log_likelihood(theta, X, y[:3])
    with pytest.raises(ValueError, match="labels"):
        model.log_likelihood(theta, X, y + 5)
    with pytest.raises(TypeError, match="y"):
        model.log_likelihood(theta, X, y.astype(float))


def test_no_mutation(small):
    model, X, y = small
    theta = model.initial(2, seed=1).numpy()
    X0, theta0 = X.copy(), theta.copy()
    model.log_likelihood(theta, X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(theta, theta0)


def test_load_digits_split():
    data = load_digits_split(0.25, seed=0)
    assert data.X_train.shape == (1347, 64) and data.X_test.shape == (450, 64)
    assert data.X_train.dtype == np.float64 and data.y_train.dtype == np.int32
    assert data.images_train.shape == (1347, 8, 8)
    np.testing.assert_allclose(data.X_train.mean(0), 0.0, atol=1e-12)
    assert set(np.unique(data.y_test)) == set(range(10))
    again = load_digits_split(0.25, seed=0)
    np.testing.assert_array_equal(data.y_train, again.y_train)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(0.0)
    with pytest.raises(TypeError, match="seed"):
        load_digits_split(0.25, seed=1.5)
