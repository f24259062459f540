"""ServoActuator: PD torque, torque clip, torque-speed envelope, modes, latency and scaling,
against numbers worked out by hand; then the same latency seen through both engines' bodies;
then the DC-motor option (duty, back-EMF, torque-current curve) by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaitforge.robots.spec import DCMotorSpec, JointSpec, RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand
from gaitforge.sim.actuator import DCMotorActuator, ServoActuator, make_actuator
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


# DC motor (Tan et al. 2018) ---------------------------------------------------------------------
# Minitaur's constants: V = 16 V, R = 0.186 ohm, K_t = 0.0954 N·m/A, curve 0..60 A -> 0..3.5 N·m.
# Full-duty stall torque by K_t alone: K_t V / R = 8.20645 N·m, so duty = PD torque / 8.20645.
DC = DCMotorSpec(battery_voltage_v=16.0, resistance_ohm=0.186, torque_constant_nm_per_a=0.0954,
                 current_a=(0, 10, 20, 30, 40, 50, 60), torque_nm=(0, 1.0, 1.9, 2.45, 3.0, 3.25,
                                                                   3.5))
DC_SPEC = dataclasses.replace(SPEC, joints=tuple(dataclasses.replace(
    j, torque_limit_nm=3.5, kp_nm_per_rad=8.20645, kd_nm_s_per_rad=0.0) for j in SPEC.joints),
    actuator=DC)


def dc_motor(**kwargs) -> DCMotorActuator:
    act = DCMotorActuator(DC_SPEC, DC, DT, **kwargs)
    act.reset(np.zeros(2))
    return act


def test_dc_motor_stall_and_linear_torque():
    """A: 1 rad error -> PD 8.20645 N·m -> duty 1 -> 16 V / 0.186 ohm = 86.02 A, beyond the
    curve's 60 A: the stall torque 3.5 N·m. B: 0.05 rad -> duty 0.05 -> 4.301 A -> 0.4301 N·m
    (the curve's 0.1 N·m/A below 10 A; the PD asked 0.4103 N·m, K_t's 0.0954 N·m/A)."""
    act = dc_motor()
    act.command(JointCommand(position_rad=np.array([1.0, 0.05])))
    np.testing.assert_allclose(act.torque(np.zeros(2), np.zeros(2)), [3.5, 0.4301075], rtol=1e-6)


def test_dc_motor_back_emf():
    """Full duty at 100 rad/s: 16 - 9.54 = 6.46 V -> 34.731 A -> 2.45 + 0.4731 x 0.55 = 2.7102
    N·m. At the no-load speed V / K_t = 167.71 rad/s the current, and the torque, are zero;
    faster, the motor brakes. Zero duty turning at 10 rad/s: -0.954 V -> -5.129 A -> -0.5129
    N·m (a shorted motor brakes). Duty -1 at 400 rad/s: -16 - 38.16 V is clipped to -50 V ->
    -268.8 A -> -3.5 N·m."""
    act = dc_motor()
    act.command(JointCommand(position_rad=np.array([5.0, 5.0])))
    tau = act.torque(np.zeros(2), np.array([100.0, 16.0 / 0.0954]))
    np.testing.assert_allclose(tau, [2.710215, 0.0], atol=1e-5)
    assert act.torque(np.zeros(2), np.array([170.0, 200.0]))[1] < 0
    torque = act.motor_torque
    np.testing.assert_allclose(torque(np.zeros(2), np.array([10.0, -10.0])),
                               [-0.5129032, 0.5129032], rtol=1e-6)
    np.testing.assert_allclose(torque(np.array([-1.0, 1.0]), np.array([400.0, 0.0])),
                               [-3.5, 3.5], atol=1e-12)


def test_dc_motor_strength_modes_and_latency():
    """Strength 0.5 halves the motor's torque (stall 1.75 N·m) but not the controller's gains
    (B still asks for duty 0.05: 0.5 x 0.4301 N·m). Damping mode at -1 rad/s with kd 0.8: PD
    0.8 N·m -> duty 0.0974843 -> 16 x 0.0974843 + 0.0954 = 1.655148 V -> 8.89865 A -> 0.889865 N·m
    (x 0.5). Off: no torque, even turning. Latency as the servo's: 2 steps."""
    act = dc_motor(latency_s=2 * DT)
    act.set_params(strength=0.5, latency_s=2 * DT)
    act.command(JointCommand(position_rad=np.array([1.0, 0.05])))
    np.testing.assert_array_equal(act.torque(np.zeros(2), np.zeros(2)), [0.0, 0.0])  # holds 0
    act.torque(np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(act.torque(np.zeros(2), np.zeros(2)), [1.75, 0.21505376],
                               rtol=1e-6)
    act = dc_motor()
    act.set_params(strength=0.5)
    act.command(JointCommand(position_rad=np.zeros(2), mode=CommandMode.DAMPING,
                             kd_nm_s_per_rad=np.array([0.8, 0.8])))
    np.testing.assert_allclose(act.torque(np.zeros(2), np.array([-1.0, 0.0])),
                               [0.5 * 0.889865, 0.0], rtol=1e-6)
    act.command(JointCommand(position_rad=np.zeros(2), mode=CommandMode.OFF))
    np.testing.assert_array_equal(act.torque(np.zeros(2), np.array([50.0, -5.0])), [0.0, 0.0])


def test_the_spec_picks_the_model_and_the_sim_config_can_override_it(robot_spec):
    assert type(make_actuator(robot_spec("servo_dog"), DT)) is ServoActuator
    minitaur = robot_spec("minitaur")
    assert type(make_actuator(minitaur, DT)) is DCMotorActuator
    assert type(make_actuator(minitaur, DT, model="servo")) is ServoActuator
    assert ActuatorConfig().model == "spec"
