"""deploy --explore: Gaussian noise on every action of a real bundle's runner, seeded,
clipped, recorded in the log; the logged action is the one sent."""
from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.deploy import VirtualClock
from gaitforge.control.runner import ExploringRunner, PolicyRunner
from gaitforge.control.runtime import load_runtime


def test_the_noise_is_the_seeded_gaussian_clipped_to_the_action_range(bundle_dir):
    runner = PolicyRunner(bundle_dir)
    obs = np.zeros(runner.obs_dim, np.float32)
    base = runner.act(obs)
    explorer = ExploringRunner(runner, 0.1, seed=7)
    draws = np.random.default_rng(7).standard_normal((2, runner.act_dim))
    np.testing.assert_allclose(explorer.act(obs), np.clip(base + 0.1 * draws[0], -1, 1),
                               atol=1e-6)
    np.testing.assert_allclose(explorer.act(obs), np.clip(base + 0.1 * draws[1], -1, 1),
                               atol=1e-6)
    wide = ExploringRunner(runner, 0.5, seed=0)
    actions = np.array([wide.act(obs) for _ in range(200)])
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert 0.3 < np.std(actions - base) < 0.55  # sigma 0.5, less where clipped
    assert explorer.bundle is runner.bundle  # the rest is the runner's
    assert explorer.metadata == {"explore": {"sigma": 0.1, "seed": 7}}


@pytest.mark.parametrize("sigma", [0.0, -0.1, 0.6])
def test_a_sigma_outside_its_range_is_refused(bundle_dir, sigma):
    with pytest.raises(ValueError, match="explore sigma"):
        ExploringRunner(PolicyRunner(bundle_dir), sigma)


def test_an_exploring_runtime_records_its_noise_and_a_plain_one_does_not(bundle_dir):
    clock = VirtualClock()
    explored = load_runtime(bundle_dir, clock, explore=0.2, explore_seed=3)
    assert isinstance(explored.runner, ExploringRunner)
    assert explored.metadata["explore"] == {"sigma": 0.2, "seed": 3}
    plain = load_runtime(bundle_dir, clock)
    assert isinstance(plain.runner, PolicyRunner) and "explore" not in plain.metadata
