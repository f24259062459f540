"""Train with what deployment enforces: the env's action path applies the safety layer's clamp
and per-tick rate limit, through the same function."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.cli.run_config import env_config
from gaitforge.control.policy_io import heading_rad
from gaitforge.control.safety import SafetyConfig, rate_limit_for
from gaitforge.sim.env import make_env


def test_the_env_moves_targets_at_most_the_deploy_rate_limit_per_step():
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false"])
    env = make_env(cfg)
    written = []
    real_write = env.body.write
    env.body.write = lambda command: (written.append(command.position_rad.copy()),
                                      real_write(command))
    try:
        env.reset(seed=0)
        spec = env.robot_spec
        step = rate_limit_for(spec, cfg.sim.control_dt_s)  # 2 x 6 rad/s x 0.02 s = 0.24 rad
        assert step == 0.24
        limited = []
        for k in range(30):  # bang-bang actions: the mapper asks for jumps of 0.6 rad
            _, _, _, _, info = env.step(np.full(12, 1.0 if k % 2 else -1.0))
            limited.append(info["rate_limited"])
    finally:
        env.close()
    moves = np.abs(np.diff(np.array(written), axis=0))
    assert moves.max() <= step + 1e-9 and any(limited)
    margin = SafetyConfig().limit_margin_rad
    assert (np.array(written) >= spec.lower_rad + margin - 1e-12).all()
    assert (np.array(written) <= spec.upper_rad - margin + 1e-12).all()


def test_the_rate_limit_term_is_the_share_of_joints_held_back():
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false",
                                                      "env.task.rewards={rate_limit: -2.0}",
                                                      "env.action.gait.frequency_hz=0"])
    env = make_env(cfg)
    try:
        env.reset(seed=0)
        _, _, _, _, still = env.step(np.zeros(12))
        _, _, _, _, jump = env.step(np.full(12, -1.0))  # 0.3 rad asked of every joint
    finally:
        env.close()
    assert still["reward_terms"]["rate_limit"] == 0.0 and not still["rate_limited"]
    # all 12 held: share 1, weight -2, times the 0.02 s control period
    assert jump["reward_terms"]["rate_limit"] == -2.0 * 1.0 * 0.02


def test_deploy_limits_can_be_turned_off():
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false",
                                                      "env.deploy_limits=false"])
    env = make_env(cfg)
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step(np.full(12, 1.0))
        _, _, _, _, info = env.step(np.full(12, -1.0))
    finally:
        env.close()
    assert info["rate_limited"] == 0.0


def test_the_heading_hold_steers_what_the_policy_and_the_gait_see():
    """servo_dog's config holds heading with gain 2: told to walk straight, the observation's
    yaw rate is minus twice the heading turned since the reset, and the gait is asked the
    same."""
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false"])
    assert cfg.observation.heading_hold.gain_per_s == 2.0
    env = make_env(cfg)
    asked = []
    real = env.action_mapper.command
    env.action_mapper.command = lambda a, t, c: (asked.append(np.array(c)), real(a, t, c))[1]
    env.set_command([0.3, 0.0, 0.0])
    try:
        obs, _ = env.reset(seed=0)
        start = heading_rad(env._obs_state.imu_quat_wxyz)
        k = env.obs_builder.layout[5]["start"] + 2  # the command term's yaw rate
        assert env.obs_builder.layout[5]["name"] == "command" and obs[k] == 0.0
        for _ in range(50):
            before = obs
            obs, _, _, _, info = env.step(np.zeros(12))
        turned = heading_rad(env._obs_state.imu_quat_wxyz) - start
    finally:
        env.close()
    assert abs(turned) > 1e-4 and info["command"][2] == 0.0  # the rewards judge the task's
    assert obs[k] == pytest.approx(-2.0 * turned * 0.25, abs=1e-6)  # yaw scale 0.25
    # the gait of the last step was asked what the observation before it showed
    np.testing.assert_allclose(asked[-1], [0.3, 0.0, before[k] / 0.25], atol=1e-6)
