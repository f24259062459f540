"""Train with what deployment enforces: the env's action path applies the safety layer's clamp
and per-tick rate limit, through the same function."""

from __future__ import annotations

import numpy as np

from gaitforge.cli.run_config import env_config
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
