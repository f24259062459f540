"""Contract tests over every robot x engine x task: what any LocomotionEnv must do.

One env per combination is shared by the tests of this module (module-scoped fixture); every
test starts from `reset(seed=...)`, which is part of the contract under test. Episodes last 1 s
(50 control steps at 50 Hz), so a 50-step rollout also ends exactly on the truncation step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gaitforge.robots.configio import ConfigError
from gaitforge.robots.types import PrivilegedState
from gaitforge.sim.config import SimConfig
from gaitforge.sim.env import EnvConfig, make_env
from gaitforge.sim.randomization import RandomizationConfig
from gaitforge.sim.tasks import TaskConfig

ROBOTS = ("servo_dog", "a1", "mini_cheetah", "minitaur")
ENGINES = ("pybullet", "mujoco")
TASKS = ("walk", "stand")
COMBOS = [(r, e, t) for r in ROBOTS for e in ENGINES for t in TASKS]
EPISODE_S, CONTROL_DT = 1.0, 0.02
EPISODE_STEPS = 50  # 1.0 s / 0.02 s


def config(robot, engine, task) -> EnvConfig:
    return EnvConfig(
        robot=robot, sim=SimConfig(engine=engine, control_dt_s=CONTROL_DT),
        task=TaskConfig(name=task, episode_length_s=EPISODE_S),
        randomization=RandomizationConfig(push_interval_s=0.0))  # no pushes: exact truncation


@pytest.fixture(scope="module", params=COMBOS, ids=["-".join(c) for c in COMBOS])
def combo(request):
    robot, engine, task = request.param
    env = make_env(config(robot, engine, task))
    yield robot, engine, task, env
    env.close()


def actions(n_joints, seed=0, steps=EPISODE_STEPS):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (steps, n_joints)).astype(np.float32)


def rollout(env, seed, acts, *, mutate=False):
    """Reset with `seed`, step through `acts` until the episode ends. Returns copies of what the
    env returned. With mutate=True every returned array (and the caller's action) is scribbled
    over right after it is recorded: an env that aliases them would change its later output."""
    obs, info = env.reset(seed=seed)
    record = {"obs": [obs.copy()], "reward": [], "terminated": [], "truncated": [],
              "critic": [info["critic_obs"].copy()]}
    prev = obs
    if mutate:
        obs.fill(1e6)
        info["critic_obs"].fill(1e6)
        info["command"].fill(1e6)
    for a in acts:
        action = a.copy()
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs is not prev and not np.shares_memory(obs, prev)
        prev = obs
        record["obs"].append(obs.copy())
        record["reward"].append(reward)
        record["terminated"].append(terminated)
        record["truncated"].append(truncated)
        record["critic"].append(info["critic_obs"].copy())
        if mutate:
            action.fill(-7.0)
            obs.fill(1e6)
            info["critic_obs"].fill(1e6)
            info["command"].fill(1e6)
            info["reward_terms"].clear()
        if terminated or truncated:
            break
    return {k: np.array(v) for k, v in record.items()}


# Spaces --------------------------------------------------------------------------------------
def test_spaces_match_the_spec(combo, robot_spec):
    robot, _, _, env = combo
    spec = robot_spec(robot)
    n = spec.n_joints
    assert env.action_space.shape == (n,)
    assert env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, -np.ones(n, np.float32))
    np.testing.assert_array_equal(env.action_space.high, np.ones(n, np.float32))
    # 3 gravity + 3 gyro + n pos + n vel + n last action + 3 command
    assert env.observation_space.shape == (9 + 3 * n,)
    assert env.observation_space.dtype == np.float32
    assert env.obs_builder.size == 9 + 3 * n
    assert sum(t["size"] for t in env.obs_builder.layout) == 9 + 3 * n
    assert env.action_mapper.layout["joint_order"] == list(spec.joint_names)
    assert env.action_mapper.layout["default_pose_rad"] == spec.default_pose_rad.tolist()
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    critic_space = env.critic_observation_space
    assert info["critic_obs"].shape == critic_space.shape == (8 + len(spec.feet),)
    assert critic_space.shape == (PrivilegedState.size(len(spec.feet)),)
    assert critic_space.dtype == np.float32 and critic_space.contains(info["critic_obs"])
    assert set(info["reward_terms"]) == set(env.task.weights)
    assert all(v == 0.0 for v in info["reward_terms"].values())  # nothing earned at reset


def test_gymnasium_env_checker(combo):
    env = combo[3]
    with warnings.catch_warnings():
        # the observation is unbounded by design (Box(-inf, inf)); the checker warns about it
        warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity.*")
        check_env(env, skip_render_check=True)


# Seeds, aliasing, finiteness -----------------------------------------------------------------
def test_same_seed_same_rollout_and_no_aliasing(combo):
    """Env A (shared) scribbles over everything it is handed back; env B (fresh) does not. With
    the same seed both must produce identical rollouts, and B again after a second reset."""
    robot, engine, task, env_a = combo
    n = env_a.action_space.shape[0]
    acts = actions(n)
    env_b = make_env(config(robot, engine, task))
    try:
        a = rollout(env_a, 7, acts, mutate=True)
        b = rollout(env_b, 7, acts)
        b_again = rollout(env_b, 7, acts)
    finally:
        env_b.close()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        np.testing.assert_array_equal(b_again[key], b[key], err_msg=key)
    assert np.all(np.isfinite(a["obs"])) and np.all(np.isfinite(a["critic"]))
    assert np.all(np.isfinite(a["reward"]))
    assert len(a["reward"]) >= 10  # a real rollout (measured: all 50 steps, then truncation)


def test_different_seeds_differ(combo):
    env = combo[3]
    acts = actions(env.action_space.shape[0], steps=10)
    a, b = rollout(env, 7, acts), rollout(env, 8, acts)
    assert not np.array_equal(a["obs"][0], b["obs"][0])
    n = min(len(a["obs"]), len(b["obs"]))
    assert np.all(np.any(a["obs"][:n] != b["obs"][:n], axis=1))  # every step differs


def test_last_action_in_the_observation_is_the_clipped_action(combo):
    env = combo[3]
    env.reset(seed=1)
    n = env.action_space.shape[0]
    action = np.linspace(-1.5, 1.5, n).astype(np.float32)  # outside [-1, 1] at both ends
    obs = env.step(action)[0]
    action_copy = action.copy()
    start = next(t["start"] for t in env.obs_builder.layout if t["name"] == "last_action")
    np.testing.assert_allclose(obs[start:start + n], np.clip(action_copy, -1, 1), rtol=1e-6)
    action.fill(0.0)  # the env must not have kept a reference to the caller's array
    obs = env.step(np.zeros(n, np.float32))[0]
    np.testing.assert_array_equal(obs[start:start + n], np.zeros(n))


def test_initial_states_are_randomised(combo, robot_spec):
    robot, _, _, env = combo
    spec = robot_spec(robot)
    starts, headings = [], []
    for seed in range(3):
        env.reset(seed=seed)
        state = env.body.read()
        q = state.joint_pos_rad
        assert np.all(q >= spec.lower_rad) and np.all(q <= spec.upper_rad)
        assert np.all(np.abs(q - spec.default_pose_rad) <= 0.1 + 1e-9)  # init_joint_noise_rad
        starts.append(q)
        w, _, _, z = state.imu_quat_wxyz
        headings.append(2 * np.arctan2(z, w))
    for i in range(3):
        for j in range(i):
            assert np.all(starts[i] != starts[j])  # every joint differs between seeds
            assert headings[i] != headings[j]


# Truncation and termination ------------------------------------------------------------------
def test_truncation_exactly_at_the_episode_length(combo):
    """1.0 s / 0.02 s = 50 steps: truncated is False for steps 1..49 and True at step 50, with
    terminated False throughout (zero action: the robot holds its default pose)."""
    env = combo[3]
    assert env.task.max_steps == EPISODE_STEPS
    env.reset(seed=3)
    zero = np.zeros(env.action_space.shape, np.float32)
    flags = [env.step(zero)[2:4] for _ in range(EPISODE_STEPS)]
    assert not any(term for term, _ in flags), "robot fell while standing still"
    assert [trunc for _, trunc in flags] == [False] * (EPISODE_STEPS - 1) + [True]


def test_termination_when_upside_down(combo, robot_spec):
    robot, _, _, env = combo
    spec = robot_spec(robot)
    env.reset(seed=4)
    # teleport 0.5 m up, rolled 180° about x: tilt far beyond the 1 rad limit
    env.body.reset(base_pos_m=[0.0, 0.0, 0.5], base_quat_wxyz=[0.0, 1.0, 0.0, 0.0],
                   joint_pos_rad=spec.default_pose_rad)
    obs, reward, terminated, truncated, info = env.step(np.zeros(spec.n_joints, np.float32))
    assert terminated is True and truncated is False
    assert info["fell"] == 1.0
    assert np.isfinite(reward) and np.all(np.isfinite(obs))
    # the observation shows it: projected gravity points up the body z axis
    assert obs[2] > 0.9


def test_reward_terms_sum_to_the_reward(combo):
    env = combo[3]
    env.reset(seed=5)
    for a in actions(env.action_space.shape[0], seed=1, steps=10):
        _, reward, terminated, truncated, info = env.step(a)
        terms = info["reward_terms"]
        assert set(terms) == set(env.task.weights)
        assert sum(terms.values()) == pytest.approx(reward, rel=1e-9, abs=1e-12)
        if terminated or truncated:
            break


# Beyond the grid: cheap checks on servo_dog ---------------------------------------------------
def test_truncation_follows_control_dt():
    """control_dt 0.04 s (20 physics steps of 2 ms), episode 0.2 s -> 5 steps."""
    env = make_env(EnvConfig(sim=SimConfig(engine="mujoco", control_dt_s=0.04),
                             task=TaskConfig(name="stand", episode_length_s=0.2)))
    try:
        env.reset(seed=0)
        zero = np.zeros(12, np.float32)
        assert [env.step(zero)[3] for _ in range(5)] == [False] * 4 + [True]
        assert env.body.time_s == pytest.approx(0.2)
    finally:
        env.close()


def test_unknown_robot_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        make_env(EnvConfig(robot="robodog"))
    for name in ROBOTS:
        assert name in str(err.value)


def test_close_twice_is_harmless():
    env = make_env(EnvConfig())
    env.close()
    env.close()


@pytest.fixture(scope="module")
def dog():
    env = make_env(EnvConfig(sim=SimConfig(engine="mujoco")))
    yield env
    env.close()


def test_reset_command_option_is_copied(dog):
    command = np.array([0.2, 0.0, 0.1])
    dog.reset(seed=0, options={"command": command})
    command[:] = 5.0
    np.testing.assert_array_equal(dog.command, [0.2, 0.0, 0.1])


def test_set_command_is_copied(dog):
    command = np.array([0.1, 0.0, 0.0])
    dog.set_command(command)
    command[:] = 7.0
    dog.reset(seed=1)
    np.testing.assert_array_equal(dog.command, [0.1, 0.0, 0.0])
    dog.set_command(None)
