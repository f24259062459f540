"""The simulated accelerometer: the specific force over the last `accel_window_s` of physics.

Worked by hand: a body in free fall reads no specific force (its acceleration is gravity's),
whatever the window. A window of one physics step reads the same after one step() of a control
period as after step(9) then step(1); a window of a control period reads the mean over it,
(v(t + 0.02) - v(t)) / 0.02 less gravity, turned into the body frame."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.robots.kinematics import quat_to_matrix
from gaitforge.robots.types import JointCommand
from gaitforge.sim.config import SimConfig

ENGINES = ("pybullet", "mujoco")
G = np.array([0.0, 0.0, 9.81])


def drop(body, spec, height_m: float) -> None:
    """At rest, level, `height_m` above the standing height, servos holding the default pose."""
    body.reset(base_pos_m=[0.0, 0.0, body.spawn_height() + height_m],
               base_quat_wxyz=[1, 0, 0, 0], joint_pos_rad=spec.default_pose_rad)
    body.write(JointCommand(position_rad=spec.default_pose_rad))


def test_window_in_physics_steps():
    assert SimConfig().accel_window_steps == 10  # a control period
    assert SimConfig(accel_window_s=0.002).accel_window_steps == 1
    assert SimConfig(accel_window_s=0.0001).accel_window_steps == 1  # at least one step
    with pytest.raises(ValueError, match="accel_window_s"):
        SimConfig(accel_window_s=0.0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("window_s", [0.002, 0.02])
def test_free_fall_reads_no_specific_force(robot_spec, sim_body, engine, window_s):
    spec = robot_spec("servo_dog")
    body = sim_body(spec, engine, accel_window_s=window_s)
    drop(body, spec, 0.5)  # 10 ms of fall is 0.5 mm: nowhere near the ground
    body.step()
    np.testing.assert_allclose(body.read().accel_m_s2, 0.0, atol=0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_step_window_reads_the_last_physics_step(robot_spec, sim_body, engine):
    """Dropped 2 cm onto the ground: the feet land within the first control periods, so the
    last physics step's force differs from the period's mean."""
    spec = robot_spec("servo_dog")
    whole, split, mean = (sim_body(spec, engine, accel_window_s=w) for w in (0.002, 0.002, 0.02))
    for body in (whole, split, mean):
        drop(body, spec, 0.02)
    readings = {"whole": [], "split": [], "mean": [], "by_hand": []}
    for _ in range(8):
        start_vel = mean._base_state()[2].copy()
        whole.step()
        split.step(9)
        split.step(1)
        mean.step()
        to_body = quat_to_matrix(mean.read().imu_quat_wxyz).T
        by_hand = to_body @ ((mean._base_state()[2] - start_vel) / 0.02 + G)
        for name, body in (("whole", whole), ("split", split), ("mean", mean)):
            readings[name].append(body.read().accel_m_s2)
        readings["by_hand"].append(by_hand)
    r = {k: np.array(v) for k, v in readings.items()}
    np.testing.assert_allclose(r["whole"], r["split"], atol=1e-6)
    np.testing.assert_allclose(r["mean"], r["by_hand"], atol=1e-6)
    assert np.abs(r["whole"] - r["mean"]).max() > 1.0  # the landing shows in the window
