"""Random seeds, as TensorFlow Probability has them.

Every function of unlearnkit that draws random numbers takes ``seed=None`` as a keyword and
accepts what ``tfd.Distribution.sample`` accepts: ``None``, a Python int, or a stateless
seed (a shape-[2] int32 tensor or a pair of ints). :func:`sanitize_seed` turns any of these
into a stateless seed, with ``tfp.random.sanitize_seed``; :func:`split_seed` derives
independent seeds from one (``tfp.random.split_seed``). The same seed gives bit-identical
results; ``None`` draws a fresh seed from TensorFlow's global generator, so
``tf.random.set_seed`` makes a whole program reproducible.

One difference from TFP: TFP treats a Python int as a *stateful* seed (two calls with
``seed=0`` draw different numbers). Here an int ``s`` is the stateless seed
``[s mod 2^32, s div 2^32]`` (each half as a signed int32), so that the same int gives the
same result every time.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["Seed", "sanitize_seed", "split_seed", "numpy_seed"]

Seed = Union[None, int, Tuple[int, int], Sequence[int], tf.Tensor]
"""``None``, an int, or a stateless seed: a pair of ints or a shape-[2] integer tensor."""

_INT32_RANGE = (-(2**31), 2**31 - 1)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def sanitize_seed(seed: Seed, name: str = "seed") -> tf.Tensor:
    """A stateless seed, a shape-[2] int32 tensor, from any seed TFP accepts.

    Args:
        seed: ``None`` (a fresh seed from TensorFlow's global generator), an int, or a
            pair of ints / a shape-[2] integer tensor (used as the stateless seed itself).
        name: the argument's name, for error messages.

    Returns:
        An int32 tensor ``[2]``, accepted by ``tfd.*.sample(seed=...)`` and by the
        ``tf.random.stateless_*`` ops.

    Raises:
        TypeError: ``seed`` is a bool, a float, a string or another type.
        ValueError: a pair with the wrong length, or an int outside the int64 range
            (a pair's entries must lie in the int32 range).
    """
    if seed is None:
        return tfp.random.sanitize_seed(None)
    if _is_int(seed):
        if not -(2**63) <= int(seed) < 2**63:
            raise ValueError(f"{name} must lie in the int64 range, got {seed}")
        low, high = int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF
        pair = [half - 2**32 if half >= 2**31 else half for half in (low, high)]
        return tfp.random.sanitize_seed(tf.constant(pair, dtype=tf.int32))
    if isinstance(seed, (tf.Tensor, tf.Variable, np.ndarray)):
        if not (seed.dtype.is_integer if isinstance(seed, (tf.Tensor, tf.Variable))
                else np.issubdtype(seed.dtype, np.integer)):
            raise TypeError(f"{name} must be an integer seed, got dtype {seed.dtype}")
        if list(seed.shape) != [2]:
            raise ValueError(f"{name} must have shape [2] (a stateless seed), got {list(seed.shape)}")
        if isinstance(seed, np.ndarray):
            seed = tuple(int(s) for s in seed)
        else:
            return tfp.random.sanitize_seed(tf.cast(seed, tf.int32))
    if isinstance(seed, (tuple, list)):
        if len(seed) != 2 or not all(_is_int(s) for s in seed):
            raise TypeError(f"{name} must be None, an int or a pair of ints, got {seed!r}")
        if not all(_INT32_RANGE[0] <= int(s) <= _INT32_RANGE[1] for s in seed):
            raise ValueError(f"{name} must hold two int32 values, got {seed!r}")
        return tfp.random.sanitize_seed(tf.constant([int(s) for s in seed], dtype=tf.int32))
    raise TypeError(
        f"{name} must be None, an int or a pair of ints (a stateless seed), "
        f"got {type(seed).__name__}"
    )


def split_seed(seed: Seed, n: int, name: str = "seed") -> list[tf.Tensor]:
    """``n`` independent stateless seeds ``[2]`` int32 derived from ``seed``."""
    return list(tf.unstack(tfp.random.split_seed(sanitize_seed(seed, name), n=n)))


def numpy_seed(seed: object, name: str = "seed") -> int:
    """A seed for ``np.random.default_rng``, for the few routines that draw with NumPy
    (the data sets, k-means seeding).

    Accepts the ints :func:`sanitize_seed` accepts (the int64 range): a non-negative int is
    returned unchanged, so its draws are NumPy's own; a negative one is taken modulo
    ``2**64``. ``None`` draws an int from TensorFlow's global generator (so
    ``tf.random.set_seed`` makes it reproducible too).

    Raises:
        TypeError: ``seed`` is not None or an int (a bool, a float, a pair, a string).
        ValueError: an int outside the int64 range.
    """
    if seed is None:
        low, high = (int(s) & 0xFFFFFFFF for s in sanitize_seed(None, name).numpy())
        return low | (high << 32)
    if not _is_int(seed):
        raise TypeError(f"{name} must be None or an int, got {type(seed).__name__}")
    if not -(2**63) <= int(seed) < 2**63:
        raise ValueError(f"{name} must lie in the int64 range, got {seed}")
    return int(seed) % 2**64
