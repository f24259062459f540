"""ServoActuator: PD torque, torque clip, torque-speed envelope, modes, latency and scaling,
against numbers worked out by hand; then the same latency seen through both engines' bodies."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.robots.spec import JointSpec, RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand
from gaitforge.sim.actuator import ServoActuator
from gaitforge.sim.config import ActuatorConfig
from gaitforge.sim.dynamics import DynamicsParams

DT = 0.002  # physics step (s)

# Two joints with different numbers, so a mix-up between joints shows:
#   A: kp 10, kd 0.5, tau_max 2.0 N·m, w_max 5 rad/s
#   B: kp 4,  kd 0.1, tau_max 1.5 N·m, w_max 6 rad/s
SPEC = RobotSpec(
    name="two_joints", description="none.urdf", base_link="base", feet=("foot",),
    nominal_mass_kg=1.0, standing_height_m=0.1,
    joints=(
        JointSpec(name="A", lower_rad=-1.0, upper_rad=1.0, velocity_limit_rad_s=5.0,
                  torque_limit_nm=2.0, default_rad=0.0, kp_nm_per_rad=10.0,
                  kd_nm_s_per_rad=0.5),
        JointSpec(name="B", lower_rad=-1.0, upper_rad=1.0, velocity_limit_rad_s=6.0,
                  torque_limit_nm=1.5, default_rad=0.0, kp_nm_per_rad=4.0,
                  kd_nm_s_per_rad=0.1),
    ),
)


def actuator(**kwargs) -> ServoActuator:
    act = ServoActuator(SPEC, DT, **kwargs)
    act.reset(np.zeros(2))
    return act


def test_pd_torque():
    act = actuator()
    act.command(JointCommand(position_rad=np.array([0.1, -0.2])))
    tau = act.torque(np.array([0.05, 0.0]), np.array([0.2, -1.0]))
    # A: 10 * (0.1 - 0.05) - 0.5 * 0.2 = 0.5 - 0.1 = 0.4
    #    envelope at dq = 0.2: upper 2 * (1 - 0.04) = 1.92, lower -2: inside
    # B: 4 * (-0.2 - 0) - 0.1 * (-1.0) = -0.8 + 0.1 = -0.7
    #    envelope at dq = -1: upper 1.5, lower -1.5 * (1 - 1/6) = -1.25: inside
    np.testing.assert_allclose(tau, [0.4, -0.7], atol=1e-12)


def test_pd_with_command_gains_and_feed_forward():
    act = actuator()
    act.command(JointCommand(position_rad=np.array([0.1, 0.1]), kp_nm_per_rad=np.array([2.0, 1.0]),
                             kd_nm_s_per_rad=np.array([0.0, 0.2]),
                             torque_ff_nm=np.array([0.3, -0.05])))
    tau = act.torque(np.array([0.0, 0.3]), np.array([0.0, 0.5]))
    # A: 2 * 0.1 - 0 + 0.3 = 0.5
    # B: 1 * (0.1 - 0.3) - 0.2 * 0.5 - 0.05 = -0.2 - 0.1 - 0.05 = -0.35
    np.testing.assert_allclose(tau, [0.5, -0.35], atol=1e-12)


def test_holds_the_reset_position_until_the_first_command():
    act = ServoActuator(SPEC, DT)
    act.reset(np.array([0.2, -0.1]))
    # A: 10 * (0.2 - 0) = 2.0 (at the limit); B: 4 * (-0.1 - 0.05) = -0.6
    np.testing.assert_allclose(act.torque(np.array([0.0, 0.05]), np.zeros(2)), [2.0, -0.6],
                               atol=1e-12)


def test_torque_clipped_to_the_limit_without_the_speed_envelope():
    act = actuator(torque_speed_limit=False)
    act.command(JointCommand(position_rad=np.array([1.0, -1.0])))
    # A: 10 * 1 = 10 -> 2.0; B: 4 * -1 = -4 -> -1.5; at any speed, here 4 rad/s
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([4.0, -4.0])), [2.0, -1.5])


SATURATE = 100.0  # target error (rad) so large that kp * error saturates either way


@pytest.mark.parametrize(("dq_a", "upper_a", "lower_a"), [
    # upper = tau_max * clip(1 - dq / w_max, 0, 1), lower = -tau_max * clip(1 + dq / w_max, 0, 1)
    # with tau_max 2, w_max 5 (joint A):
    (0.0, 2.0, -2.0),
    (2.5, 1.0, -2.0),  # half speed forward: 2 * (1 - 0.5) = 1; braking keeps the full 2
    (-2.5, 2.0, -1.0),  # half speed backward: mirror image
    (4.0, 0.4, -2.0),  # 2 * (1 - 0.8) = 0.4
    (-1.0, 2.0, -1.6),  # -2 * (1 - 0.2) = -1.6
    (5.0, 0.0, -2.0),  # at the no-load speed nothing more can be added
    (7.5, 0.0, -2.0),  # beyond it the clip keeps 0, never a negative upper bound
    (-7.5, 2.0, 0.0),
])
def test_torque_speed_envelope(dq_a, upper_a, lower_a):
    dq = np.array([dq_a, 3.0])
    # joint B at dq = 3 (w_max 6, tau_max 1.5): upper 1.5 * 0.5 = 0.75, lower -1.5
    for sign, expected in ((1.0, [upper_a, 0.75]), (-1.0, [lower_a, -1.5])):
        act = actuator()
        act.command(JointCommand(position_rad=np.full(2, sign * SATURATE),
                                 kd_nm_s_per_rad=np.zeros(2)))
        np.testing.assert_allclose(act.torque(np.zeros(2), dq), expected, atol=1e-12)
    off = actuator(torque_speed_limit=False)  # the envelope is optional: plain ±tau_max
    off.command(JointCommand(position_rad=np.full(2, SATURATE), kd_nm_s_per_rad=np.zeros(2)))
    np.testing.assert_allclose(off.torque(np.zeros(2), dq), [2.0, 1.5])


def test_damping_and_off_modes():
    act = actuator()
    act.command(JointCommand(position_rad=np.array([0.9, 0.9]), mode=CommandMode.DAMPING))
    # damping ignores the target: A -0.5 * 1.0 = -0.5; B -0.1 * -2.0 = 0.2
    np.testing.assert_allclose(act.torque(np.array([0.3, -0.3]), np.array([1.0, -2.0])),
                               [-0.5, 0.2], atol=1e-12)
    # damping that would exceed the braking limit is clipped: A -0.5 * 8 = -4 -> -2
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([8.0, 0.0])), [-2.0, 0.0])
    act.command(JointCommand(position_rad=np.array([0.9, 0.9]), mode=CommandMode.OFF))
    np.testing.assert_array_equal(act.torque(np.array([0.3, -0.3]), np.array([1.0, -2.0])),
                                  [0.0, 0.0])


def test_strength_and_gain_scaling():
    act = actuator()
    act.set_params(strength=0.5, kp_scale=2.0, kd_scale=0.5)
    act.reset(np.zeros(2))  # gains are taken when a command activates
    act.command(JointCommand(position_rad=np.array([0.05, 0.1]),
                             torque_ff_nm=np.array([0.2, 0.0])))
    tau = act.torque(np.zeros(2), np.array([1.0, 0.0]))
    # A: 0.5 * (2 * 10 * 0.05 - 0.5 * 0.5 * 1.0 + 0.2) = 0.5 * (1.0 - 0.25 + 0.2) = 0.475
    # B: 0.5 * (2 * 4 * 0.1) = 0.4
    np.testing.assert_allclose(tau, [0.475, 0.4], atol=1e-12)
    # the limit scales with strength: A 0.5 * 2 = 1.0 (upper at dq 1: 1.0 * 0.8 = 0.8)
    act.command(JointCommand(position_rad=np.full(2, SATURATE)))
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([1.0, 0.0])), [0.8, 0.75],
                               atol=1e-12)


def test_per_joint_factors_and_viscous_joint_damping():
    act = actuator()
    act.set_params(strength=[1.0, 0.5], kp_scale=[1.0, 2.0], damping_nm_s_per_rad=[0.1, 0.3])
    act.reset(np.zeros(2))
    act.command(JointCommand(position_rad=np.array([0.05, 0.1])))
    tau = act.torque(np.zeros(2), np.array([1.0, -2.0]))
    # A: 10 * 0.05 - 0.5 * 1.0 = 0.0 (servo), - 0.1 * 1.0 (joint) = -0.1
    # B: 0.5 * (2 * 4 * 0.1 - 0.1 * -2.0) = 0.5 * 1.0 = 0.5, - 0.3 * -2.0 = +0.6 -> 1.1
    np.testing.assert_allclose(tau, [-0.1, 1.1], atol=1e-12)
    # the joint's damping is not the servo's: it acts with torque off, and past the clip
    act.command(JointCommand(position_rad=np.zeros(2), mode=CommandMode.OFF))
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([1.0, -2.0])), [-0.1, 0.6],
                               atol=1e-12)
    act.command(JointCommand(position_rad=np.full(2, SATURATE)))
    # A clipped at +2 (upper at dq 0.5: 2 * 0.9 = 1.8), then -0.1 * 0.5 = -0.05 -> 1.75
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([0.5, 0.0]))[0], 1.75,
                               atol=1e-12)


def test_latency_in_whole_physics_steps():
    # 0.006 s / 0.002 s = 3 steps
    act = actuator(latency_s=0.006)
    assert act.latency_steps == 3
    act.command(JointCommand(position_rad=np.array([0.1, 0.0])))  # written before step 0
    taus = [act.torque(np.zeros(2), np.zeros(2))[0] for _ in range(6)]
    # steps 0, 1, 2 still hold the reset position (torque 0); from step 3 on: 10 * 0.1 = 1.0
    np.testing.assert_allclose(taus, [0, 0, 0, 1.0, 1.0, 1.0], atol=1e-12)
    # a second command written after step 5 takes effect at step 6 + 3 = 9
    act.command(JointCommand(position_rad=np.array([-0.1, 0.0])))
    taus = [act.torque(np.zeros(2), np.zeros(2))[0] for _ in range(5)]
    np.testing.assert_allclose(taus, [1.0, 1.0, 1.0, -1.0, -1.0], atol=1e-12)


def test_zero_latency_acts_on_the_next_step_and_rounding():
    act = actuator()
    act.command(JointCommand(position_rad=np.array([0.1, 0.0])))
    assert act.torque(np.zeros(2), np.zeros(2))[0] == pytest.approx(1.0)
    assert actuator(latency_s=0.0049).latency_steps == 2  # 2.45 steps rounds to 2
    assert actuator(latency_s=0.0051).latency_steps == 3  # 2.55 rounds to 3
    act.set_params(latency_s=0.02)
    assert act.latency_steps == 10


def test_reset_drops_queued_commands():
    act = actuator(latency_s=0.004)
    act.command(JointCommand(position_rad=np.array([0.1, 0.1])))
    act.reset(np.zeros(2))
    assert [act.torque(np.zeros(2), np.zeros(2))[0] for _ in range(4)] == [0.0] * 4


def test_negative_latency_rejected():
    with pytest.raises(ValueError, match="latency_s"):
        ActuatorConfig(latency_s=-0.001)


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_latency_through_a_body(robot_spec, sim_body, engine):
    """The body runs the actuator once per physics step: with 3 steps of latency the torque it
    reports jumps on the 4th physics step after write(). Fixed base in the air, at rest at the
    default pose: a 0.2 rad step on FR_thigh gives kp * 0.2 = 4 * 0.2 = 0.8 N·m on the step it
    arrives (the joint has not moved yet), plus the few hundredths of N·m holding the leg's
    weight before it."""
    spec = robot_spec("servo_dog")
    body = sim_body(spec, engine, fixed_base=True)
    body.set_dynamics(DynamicsParams(latency_s=0.006))
    body.reset(base_pos_m=[0, 0, 1.0], base_quat_wxyz=[1, 0, 0, 0],
               joint_pos_rad=spec.default_pose_rad)
    target = spec.default_pose_rad.copy()
    target[1] += 0.2
    body.write(JointCommand(position_rad=target))
    seen = []
    for _ in range(4):
        body.step(1)
        seen.append(body.read().joint_torque_nm[1])
    assert all(abs(t) < 0.05 for t in seen[:3]), seen  # still holding the default pose
    assert abs(seen[3] - 0.8) < 0.05, seen  # the step has arrived
