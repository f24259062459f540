"""Evaluation metrics against numbers worked out by hand, on a scripted 'policy'."""

from __future__ import annotations

import numpy as np

from gaitforge.cli.run_config import env_config
from gaitforge.sim.evaluation import evaluate_locomotion, walking


def test_standing_still_at_a_forward_command_is_judged_as_not_walking():
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false",
                                                     "env.action.gait.frequency_hz=0"])
    result = evaluate_locomotion(lambda obs: np.zeros((len(obs), 12)), cfg, episodes=2,
                                 command=(0.3, 0.0, 0.0), episode_length_s=3.0)
    # without the gait prior, zero action holds the default pose: the trunk barely moves, so
    # every 1-s window's mean velocity is ~0 and the error is ~|0 - 0.3| = 0.3 m/s; no fall
    assert result["fall_rate"] == 0.0
    assert abs(result["vx_tracking_error"] - 0.3) < 0.02
    assert abs(result["vx_mean"]) < 0.02
    assert result["episodes"] == 2 and result["command_vx"] == 0.3
    assert not walking(result)
    assert walking({"fall_rate": 0.0, "vx_tracking_error": 0.05})
    assert not walking({"fall_rate": 0.1, "vx_tracking_error": 0.05})


def test_an_early_fall_still_gives_a_finite_error():
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false"])
    flail = np.random.default_rng(0)
    result = evaluate_locomotion(lambda obs: flail.choice([-1.0, 1.0], size=(len(obs), 12)),
                                 cfg, episodes=1, episode_length_s=3.0)
    assert np.isfinite(result["vx_tracking_error"]) and np.isfinite(result["vx_mean"])


def test_the_gait_prior_alone_steps_forward_without_falling():
    """servo_dog's trot with zero policy action: open loop it walks forward at a 0.3 m/s
    command (0.32-0.34 m/s in MuJoCo, measured) and nothing falls."""
    cfg = env_config("servo_dog", "walk", "mujoco", ["env.randomization.enabled=false"])
    result = evaluate_locomotion(lambda obs: np.zeros((len(obs), 12)), cfg, episodes=1,
                                 command=(0.3, 0.0, 0.0), episode_length_s=4.0)
    assert result["fall_rate"] == 0.0 and 0.2 < result["vx_mean"] < 0.45
