"""External envs (gymnasium, dm-control suite): spaces, seeds, action mapping, time limits, VecEnv.

Real gymnasium and dm_control, no mocks.
"""

from __future__ import annotations

import os
import pickle
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gaitforge.sim.external import (
    DmControlEnv,
    external_env_factory,
    make_external_env,
    rescale_action,
)
from gaitforge.sim.vec_env import VecEnv

# No display here: keep dm_control (imported lazily, below and by the adapter) off GLFW.
# Spawned VecEnv workers inherit the variable.
os.environ.setdefault("MUJOCO_GL", "disable")


class DictObsEnv(gymnasium.Env):
    """A tiny env with a Dict observation, float64 actions in [0, 10] and episode-end info."""

    observation_space = gymnasium.spaces.Dict(
        {
            "b": gymnasium.spaces.Box(-5.0, 5.0, (2,), np.float64),
            "a": gymnasium.spaces.Box(-1.0, 1.0, (), np.float64),
        }
    )
    action_space = gymnasium.spaces.Box(0.0, 10.0, (1,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.last_action = 0, None
        return {"b": np.array([0.5, -0.25]), "a": np.array(0.125)}, {"reset_key": 1}

    def step(self, action):
        self.t, self.last_action = self.t + 1, action
        info = {"episode_end": True} if self.t == 3 else {}
        obs = {"b": np.array([1.5, -2.0]), "a": np.array(-0.5)}
        return obs, 1, self.t == 3, False, info


gymnasium.register("gaitforge-test/DictObs-v0", entry_point=DictObsEnv, disable_env_checker=True)

CHEAP_IDS = ["gym:Pendulum-v1", "dmc:cartpole-swingup", "dmc:walker-walk"]


def _rollout(env: gymnasium.Env, seed: int | None, steps: int = 20, action_seed: int = 0):
    """Observations and rewards of reset(seed) then `steps` steps of fixed random actions."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
        observations.append(obs)
        rewards.append(reward)
    return np.stack(observations), np.array(rewards)


@pytest.mark.parametrize("env_id", CHEAP_IDS)
def test_spaces_are_normalised_float32_and_infos_empty(env_id):
    env = make_external_env(env_id)
    act, obs_space = env.action_space, env.observation_space
    assert isinstance(act, gymnasium.spaces.Box) and act.dtype == np.float32
    np.testing.assert_array_equal(act.low, -1.0)
    np.testing.assert_array_equal(act.high, 1.0)
    assert isinstance(obs_space, gymnasium.spaces.Box) and obs_space.dtype == np.float32
    assert len(obs_space.shape) == 1
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in obs_space and info == {}
    obs, reward, terminated, truncated, info = env.step(act.high)
    assert obs.dtype == np.float32 and obs in obs_space and info == {}
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert env.critic_observation_space is None  # declared: no privileged state
    env.close()


def test_gym_dict_obs_is_flattened_infos_stripped_actions_mapped():
    env = make_external_env("gym:gaitforge-test/DictObs-v0")
    assert env.observation_space == gymnasium.spaces.Box(
        np.array([-1, -5, -5], np.float32), np.array([1, 5, 5], np.float32)
    )  # FlattenObservation orders the Dict's sorted keys: a, then b
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.tolist() == [0.125, 0.5, -0.25] and info == {}
    for normalised, real, done in [(1.0, 10.0, False), (-0.5, 2.5, False), (-2.0, 0.0, True)]:
        obs, reward, terminated, truncated, info = env.step(np.array([normalised], np.float32))
        assert env.unwrapped.last_action == pytest.approx([real], abs=1e-12)
        assert (info, type(reward), terminated, truncated) == ({}, float, done, False)
    assert obs.tolist() == [-0.5, 1.5, -2.0]
    env.close()


def test_gym_mujoco_env_info_is_stripped_and_obs_cast():
    env = make_external_env("gym:HalfCheetah-v5", seed=0)  # float64 obs; info has reward terms
    assert env.unwrapped.observation_space.dtype == np.float64
    assert env.reset()[1] == {}
    obs, _, _, _, info = env.step(env.action_space.high)
    assert info == {} and obs.dtype == np.float32 and obs in env.observation_space
    env.close()


@pytest.mark.parametrize("env_id", ["gym:Pendulum-v1", "dmc:cartpole-swingup"])
def test_check_env_passes(env_id):
    env = make_external_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite obs bounds; "env is wrapped" notes
        check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", CHEAP_IDS)
def test_same_seed_same_trajectory_and_different_seeds_differ(env_id):
    env_a, env_b = make_external_env(env_id), make_external_env(env_id)
    obs_a, rew_a = _rollout(env_a, seed=7)
    _rollout(env_a, seed=8)  # move env_a's RNG on; reset(seed=7) must still reproduce
    again_a, again_rew_a = _rollout(env_a, seed=7)
    obs_b, rew_b = _rollout(env_b, seed=7)
    for obs, rew in [(again_a, again_rew_a), (obs_b, rew_b)]:
        np.testing.assert_array_equal(obs, obs_a)
        np.testing.assert_array_equal(rew, rew_a)
    other, _ = _rollout(env_b, seed=8)
    assert not np.array_equal(other[0], obs_a[0])  # different initial states
    # The constructor seed seeds the first unseeded reset.
    seeded = make_external_env(env_id, seed=7)
    np.testing.assert_array_equal(_rollout(seeded, seed=None)[0], obs_a)
    for env in (env_a, env_b, seeded):
        env.close()


def test_dmc_episode_equals_dm_control_loaded_with_the_same_seed():
    """reset(seed=s) == suite.load(random=s); the flat obs is the spec's keys in order."""
    from dm_control import suite

    env = DmControlEnv("walker", "walk")
    raw = suite.load("walker", "walk", task_kwargs={"random": 11})
    assert list(env.observation_layout) == ["orientations", "height", "velocity"]
    assert list(env.observation_layout) == list(raw.observation_spec())
    assert env.observation_layout["height"] == slice(14, 15)
    obs, _ = env.reset(seed=11)
    time_step = raw.reset()
    rng = np.random.default_rng(1)
    for _ in range(5):
        for key, where in env.observation_layout.items():
            np.testing.assert_array_equal(
                obs[where], np.float32(time_step.observation[key]).ravel()
            )
        action = rng.uniform(-1, 1, 6)  # walker's bounds are [-1, 1]: the mapping is identity
        obs, reward, *_ = env.step(action.astype(np.float32))
        time_step = raw.step(action.astype(np.float32).astype(np.float64))
        assert reward == time_step.reward


def test_rescale_action_hand_computed():
    low = np.array([-1.0, -1.0, -0.8, 0.0, -1.0, -1.0])
    high = np.array([1.0, 1.1, 0.8, 4.0, 1.1, 1.1])
    action = np.array([-1.0, 0.0, 1.0, 0.5, 2.0, -3.0], dtype=np.float32)
    # -1 -> low; 0 -> (low + high) / 2; +1 -> high; 0.5 on [0, 4] -> 3; outside [-1, 1]: clipped.
    expected = [-1.0, 0.05, 0.8, 3.0, 1.1, -1.0]
    np.testing.assert_allclose(rescale_action(action, low, high), expected, rtol=0, atol=1e-12)


def test_dmc_actions_reach_the_real_bounds():
    env = make_external_env("dmc:quadruped-walk", seed=0)  # asymmetric bounds, e.g. [-1, 1.1]
    spec = env.unwrapped.dm_env.action_spec()
    assert np.any(spec.minimum != -spec.maximum)
    ctrl = env.unwrapped.dm_env.physics.data.ctrl
    env.reset()
    for normalised, expected in [
        (1.0, spec.maximum),
        (-1.0, spec.minimum),
        (0.0, (spec.minimum + spec.maximum) / 2),
    ]:
        env.step(np.full(12, normalised, dtype=np.float32))
        np.testing.assert_allclose(ctrl, expected, rtol=0, atol=1e-12)
    env.close()


def test_gym_actions_reach_the_real_bounds():
    env = make_external_env("gym:Pendulum-v1", seed=0)  # torque bounds [-2, 2] N m
    env.reset()
    for normalised, torque in [(1.0, 2.0), (-1.0, -2.0), (0.25, 0.5), (3.0, 2.0)]:
        env.step(np.array([normalised], dtype=np.float32))
        assert env.unwrapped.last_u == pytest.approx(torque, abs=1e-6)
    env.close()


def test_dmc_time_limit_is_truncation_and_step_after_it_raises():
    env = make_external_env("dmc:cartpole-swingup", seed=0, time_limit=0.1)  # 10 steps of 0.01 s
    for _episode in range(2):
        env.reset()
        flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(10)]
        assert flags == [(False, False)] * 9 + [(False, True)]
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(1, np.float32))
    env.close()


def test_dmc_discount_zero_is_termination():
    env = make_external_env("dmc:lqr-lqr_2_1", seed=0)  # ends when the state norm is < 1e-6
    env.reset()
    physics = env.unwrapped.dm_env.physics
    with physics.reset_context():
        physics.data.qpos[:] = 0.0
        physics.data.qvel[:] = 0.0
    _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
    assert (terminated, truncated) == (True, False)
    env.close()


@pytest.mark.parametrize(
    ("env_id", "must_contain"),
    [
        ("Pendulum-v1", ["'Pendulum-v1'", "gym, dmc"]),
        ("foo:bar", ["'foo:bar'", "gym, dmc"]),
        ("gym:Pendulm-v1", ["'gym:Pendulm-v1'", "Did you mean Pendulum-v1", "CartPole-v1"]),
        ("gym:CartPole-v1", ["gym:CartPole-v1", "Discrete(2)", "continuous"]),
        ("dmc:walker", ["'dmc:walker'", "<domain>-<task>"]),
        ("dmc:walkr-walk", ["'dmc:walkr-walk'", "walker-walk", "ball_in_cup-catch"]),
        ("dmc:walker-fly", ["'dmc:walker-fly'", "walker-run", "quadruped-walk"]),
    ],
)
def test_unknown_or_unsupported_ids_are_named(env_id, must_contain):
    with pytest.raises(ValueError) as excinfo:
        make_external_env(env_id)
    for text in must_contain:
        assert text in str(excinfo.value)


def test_domain_with_underscore_splits_on_first_dash():
    env = make_external_env("dmc:ball_in_cup-catch")
    assert env.action_space.shape == (2,)
    assert list(env.observation_layout) == ["position", "velocity"]
    env.close()


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("dmc:cartpole-swingup", {"time_limit": 0.1}), ("gym:Pendulum-v1", {"max_episode_steps": 10})],
)
def test_vec_env_workers_match_in_process(env_id, kwargs):
    factory = external_env_factory(env_id, **kwargs)
    assert pickle.loads(pickle.dumps(factory))().action_space.shape == (1,)
    n, steps = 3, 25  # 10-step episodes: every env autoresets twice
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, 1)).astype(np.float32)
    results = []
    for workers in (0, 2):
        with VecEnv([factory] * n, workers=workers, seed=3) as venv:
            assert venv.single_critic_observation_space is None  # no privileged state
            out = [venv.reset()[0]]
            for a in actions:
                obs, reward, terminated, truncated, info = venv.step(a)
                out += [obs, reward, terminated, truncated, info["final_obs"]]
                assert set(info) == {"final_obs", "done"}
        results.append(out)
    assert np.sum(results[0][4::5]) == 2 * n  # truncated: twice per env
    assert not np.any(results[0][3::5])  # terminated: never
    for in_process, in_workers in zip(*results, strict=True):
        np.testing.assert_array_equal(in_workers, in_process)
