"""make_vec_env over the real locomotion env: subprocess workers reproduce single envs exactly."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.cli.run_config import env_config
from gaitforge.sim.env import make_env, make_vec_env


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_workers_match_single_envs_with_the_same_seeds(engine):
    cfg = env_config("servo_dog", "walk", engine, ["env.task.episode_length_s=0.5"])
    n, steps, seed = 3, 40, 7  # 25-step episodes: every env autoresets at least once
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, n, 12)).astype(np.float32)

    singles = [make_env(cfg) for _ in range(n)]
    expected_obs, expected_rew, expected_done = [], [], []
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    for a in actions:
        row_obs, row_rew, row_done = [], [], []
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(a[i])
            if term or trunc:
                o, _ = env.reset()
            row_obs.append(o)
            row_rew.append(r)
            row_done.append(term or trunc)
        expected_obs.append(row_obs)
        expected_rew.append(row_rew)
        expected_done.append(row_done)
    for env in singles:
        env.close()
    assert np.any(expected_done)

    with make_vec_env(cfg, n, workers=2, seed=seed) as venv:
        # the critic's size reaches the trainer through the spaces, before any reset
        assert venv.single_critic_observation_space == singles[0].critic_observation_space
        assert venv.single_critic_observation_space.shape == (8 + 4,)  # servo_dog: 4 feet
        first, info = venv.reset()
        assert info["critic_obs"].shape == (n, 12)
        np.testing.assert_array_equal(first, np.stack(obs))
        for t, a in enumerate(actions):
            o, r, term, trunc, info = venv.step(a)
            np.testing.assert_array_equal(o, np.stack(expected_obs[t]))
            np.testing.assert_array_equal(r, np.float32(expected_rew[t]))
            np.testing.assert_array_equal(info["done"], expected_done[t])
            assert set(info["reward_terms"]) == set(singles[0].task.weights)
