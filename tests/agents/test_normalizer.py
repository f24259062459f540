"""Observation normaliser: running statistics equal NumPy's over the concatenated batches."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gaitforge.agents.normalizer import RunningNormalizer


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 10**6))
def test_matches_numpy_over_concatenated_batches(sizes, seed):
    rng = np.random.default_rng(seed)
    norm = RunningNormalizer(3)
    batches = [rng.normal(loc=[5.0, -2.0, 0.0], scale=[0.1, 3.0, 100.0], size=(n, 3))
               for n in sizes]
    for b in batches:
        norm.update(b)
    allx = np.concatenate(batches)
    assert norm.count == len(allx)
    np.testing.assert_allclose(norm.mean_np, allx.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(norm.var_np, allx.var(axis=0), rtol=1e-9, atol=1e-12)


def test_numpy_and_tf_sides_agree_and_clip():
    rng = np.random.default_rng(0)
    norm = RunningNormalizer(4, clip=3.0)
    norm.update(rng.normal(size=(500, 4)) * [1, 2, 3, 4] + [1, 0, -1, 10])
    x = (rng.normal(size=(20, 4)) * 5).astype(np.float32)
    y_np = norm.normalize(x)
    y_tf = tf.function(norm.normalize_tf)(tf.constant(x)).numpy()
    np.testing.assert_allclose(y_np, y_tf, rtol=1e-6, atol=1e-6)
    assert y_np.max() <= 3.0 and y_np.min() >= -3.0
    expected = np.clip((x - norm.mean_np) / np.sqrt(norm.var_np + norm.eps), -3, 3)
    np.testing.assert_allclose(y_np, expected, rtol=1e-5, atol=1e-5)


def test_state_round_trip_and_disabled_identity():
    rng = np.random.default_rng(1)
    a = RunningNormalizer(2)
    a.update(rng.normal(size=(10, 2)))
    b = RunningNormalizer(2)
    b.set_state(a.get_state())
    x = rng.normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_array_equal(a.normalize(x), b.normalize(x))
    with pytest.raises(ValueError, match="'mean' has shape"):
        RunningNormalizer(3).set_state(a.get_state())
    off = RunningNormalizer(2, enabled=False)
    off.update(x * 100)
    np.testing.assert_array_equal(off.normalize(x), x)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        a.update(np.zeros((3, 5)))
