"""Shared test set-up: quiet TensorFlow, float64, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import settings  # noqa: E402

# TensorFlow calls are slow to start; hypothesis deadlines would be flaky.
settings.register_profile("unlearnkit", deadline=None, max_examples=30, print_blob=True)
# Longer local runs: python -m pytest tests --hypothesis-profile=long
# (1,000 examples per property; the exact module's sequence laws then check 1,000 sequences).
settings.register_profile("long", deadline=None, max_examples=1000, print_blob=True)
settings.load_profile("unlearnkit")


@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)
    tf.random.set_seed(0)
