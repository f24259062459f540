"""System identification on short synthetic logs: a known latency and friction come back,
too little motion is refused by name, and parameters the logs can only identify together are
reported as such."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.deploy import clock_and_sleep
from gaitforge.control.excitation import ExcitationConfig
from gaitforge.control.logger import read_log
from gaitforge.control.runtime import deploy, excitation_runtime
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.dynamics import DynamicsParams
from gaitforge.sim.env import make_body
from gaitforge.sim.replay import LogCommands
from gaitforge.sim.robot_adapters import SimulatedRobot
from gaitforge.sim.sysid import IdentificationError, Problem, expand_fit, fit, legs

SPEC = load_robot_spec("servo_dog")
TRUTH = DynamicsParams(latency_s=0.008, joint_friction_nm=0.04, armature_kg_m2=0.003)


def excitation_log(tmp_path, dynamics, seconds=4.0, amplitude=0.4, name="exc"):
    clock, sleep = clock_and_sleep(False)
    runtime, duration = excitation_runtime(
        SPEC, ExcitationConfig(duration_s=seconds, amplitude_rad=amplitude, ramp_s=0.5),
        0.02, clock)
    body = make_body(SPEC, SimConfig(engine="mujoco"), fixed_base=True)
    body.set_dynamics(dynamics)
    robot = SimulatedRobot(body)
    path = tmp_path / f"{name}.gflog"
    deploy(runtime, robot, duration_s=duration, command=(0, 0, 0), clock=clock, sleep=sleep,
           log_path=path, metadata={"body": "sim:mujoco", "support": "hung"})
    robot.close()
    return LogCommands.from_log(read_log(path))


NOMINAL = DynamicsParams(armature_kg_m2=0.003)


def problem(logs, names, base=NOMINAL):
    return Problem(SPEC, "mujoco", 0.02, "hung", logs, base, names)


def test_a_known_latency_and_friction_are_recovered(tmp_path):
    log = excitation_log(tmp_path, TRUTH)
    result = fit(problem([log], ("joint_friction_nm",)), fit_latency=True, workers=0,
                 generations=8)
    assert result.latency_steps == 4  # 8 ms at 2 ms physics steps: exactly
    assert result.params.latency_s == pytest.approx(0.008)
    assert result.params.joint_friction_nm == pytest.approx(0.04, rel=0.05)
    assert result.cost_fit < result.cost_start - 2.0


def test_too_little_motion_is_refused_naming_the_parameter(tmp_path):
    """Joints that barely move (2 mrad) cannot show a delay; gravity on the hanging legs still
    shows friction, so only the latency is refused."""
    still = excitation_log(tmp_path, TRUTH, seconds=3.0, amplitude=0.002, name="still")
    with pytest.raises(IdentificationError, match="too little to identify latency_s "):
        fit(problem([still], ("joint_friction_nm",)), fit_latency=True, workers=0)


def test_gain_and_strength_are_reported_as_identifiable_only_together(tmp_path):
    """Without torque saturation, motor_strength scales both gains exactly as kp_scale and
    kd_scale do together: the replay cannot tell a stronger motor from higher gains."""
    log = excitation_log(tmp_path, TRUTH, amplitude=0.05, name="small")
    result = fit(problem([log], ("kp_scale", "kd_scale", "motor_strength")),
                 fit_latency=False, workers=0, generations=3)
    assert [group for group, _ in result.together] == [
        ("kp_scale", "kd_scale", "motor_strength")]


def test_one_weak_leg_is_found_by_a_fit_per_leg(tmp_path):
    """The front-left leg's servos at half the gain: kp_scale/leg finds that leg at 0.5 and the
    others at 1, where one kp_scale for the robot could only split the difference."""
    weak = tuple([1.0] * 3 + [0.5] * 3 + [1.0] * 6)
    log = excitation_log(tmp_path, DynamicsParams(kp_scale=weak, armature_kg_m2=0.003),
                         amplitude=0.3, name="weak")
    names = tuple(expand_fit(["kp_scale/leg"], SPEC))
    assert names == ("kp_scale/FR", "kp_scale/FL", "kp_scale/RR", "kp_scale/RL")
    result = fit(problem([log], names), fit_latency=False, workers=0, generations=6)
    kp = result.params.joint_values("kp_scale", SPEC)
    assert kp[3:6] == pytest.approx([0.5] * 3, rel=0.05)
    assert np.delete(kp, [3, 4, 5]) == pytest.approx([1.0] * 9, rel=0.05)


def test_legs_are_named_by_their_feet_and_hold_their_joints_in_order():
    assert legs(SPEC) == {"FR": [0, 1, 2], "FL": [3, 4, 5], "RR": [6, 7, 8], "RL": [9, 10, 11]}
    assert list(legs(load_robot_spec("mini_cheetah"))) == ["fr", "fl", "hr", "hl"]
    # lower_leg_front_leftL_link: the shared words cut, not the shared letters
    assert legs(load_robot_spec("minitaur")) == {"front_leftL": [0, 1], "back_leftL": [2, 3],
                                         "front_rightL": [4, 5], "back_rightL": [6, 7]}
    with pytest.raises(ValueError, match="'trunk_mass_delta_kg/leg': trunk_mass_delta_kg is "
                       "one value for the whole robot"):
        expand_fit(["trunk_mass_delta_kg/leg"], SPEC)
    with pytest.raises(ValueError, match="unknown parameter 'kp_scale/FR'"):
        expand_fit(["kp_scale/FR"], SPEC)
    with pytest.raises(ValueError, match="kp_scale is asked for both for the whole robot and"):
        expand_fit(["kp_scale", "kp_scale/leg"], SPEC)
