"""SimulatedRobot's sensor noise: bounded by the half-widths, seeded, on what is read only."""

from __future__ import annotations

import numpy as np

from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.env import make_body
from gaitforge.sim.randomization import NoiseConfig
from gaitforge.sim.robot_adapters import SimulatedRobot

SPEC = load_robot_spec("servo_dog")
NOISE = NoiseConfig(joint_pos_rad=0.01, joint_vel_rad_s=0.5, gyro_rad_s=0.1, imu_tilt_rad=0.02)


def reads(noise, seed=0):
    robot = SimulatedRobot(make_body(SPEC, SimConfig(engine="mujoco")), noise=noise, seed=seed)
    robot.configure()
    try:
        return robot.read(), robot.body.read()
    finally:
        robot.close()


def test_noise_stays_within_its_half_widths_and_leaves_the_truth_alone():
    noisy, exact = reads(NOISE)
    dq = noisy.joint_pos_rad - exact.joint_pos_rad
    assert 0 < np.abs(dq).max() <= 0.01
    assert np.abs(noisy.joint_vel_rad_s - exact.joint_vel_rad_s).max() <= 0.5
    assert np.abs(noisy.gyro_rad_s - exact.gyro_rad_s).max() <= 0.1
    # a rotation by axis-angle a: the quaternions' dot product is cos(|a|/2) >= cos(0.02 sqrt3 / 2)
    dot = abs(float(np.dot(noisy.imu_quat_wxyz, exact.imu_quat_wxyz)))
    assert np.cos(0.02 * np.sqrt(3) / 2) - 1e-9 <= dot < 1.0
    np.testing.assert_array_equal(noisy.privileged.base_lin_vel_m_s,
                                  exact.privileged.base_lin_vel_m_s)


def test_the_same_seed_reads_the_same_and_no_noise_reads_exactly():
    a, b, c = reads(NOISE, seed=3)[0], reads(NOISE, seed=3)[0], reads(NOISE, seed=4)[0]
    np.testing.assert_array_equal(a.joint_pos_rad, b.joint_pos_rad)
    assert not np.array_equal(a.joint_pos_rad, c.joint_pos_rad)
    plain, exact = reads(None)
    np.testing.assert_array_equal(plain.joint_pos_rad, exact.joint_pos_rad)
