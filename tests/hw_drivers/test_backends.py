"""The joint backends behind one interface (`JointBackend`: configure, read, send, fault_cause),
each against its virtual devices on real pseudo-terminals (the rig in conftest.py), with a
hardware YAML whose left legs are mirrored and whose thighs and calves have zero offsets, so
every conversion between joint and servo has a sign and an offset to get right.

What is checked is the contract the body relies on: a state read is in joint convention
(the robot's pose, as the device side's physics holds it), a command sent arrives at the
device side's physics as the same joint-space command, the wire carries servo units, and the
one retry policy: the Dynamixel bus re-asks a lost reply REPLY_RETRIES times, the board link
never, and nothing retries on top of either at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from gaitforge.hw_drivers.backends import (
    REPLY_RETRIES,
    BoardBackend,
    DynamixelBackend,
    JointBackend,
)
from gaitforge.hw_drivers.board import BoardTimeout
from gaitforge.hw_drivers.board_codec import HOST_TYPES, Command, FrameDecoder, Heartbeat
from gaitforge.hw_drivers.body import STARTUP_STATE_TIMEOUT_S
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import Instruction
from gaitforge.hw_drivers.dynamixel_bus import DxlTimeout
from gaitforge.hw_drivers.hwconfig import HwConfig, load_hw_config
from gaitforge.hw_drivers.virtual import parse_faults
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, JointCommand, RobotState

SPEC = load_robot_spec("servo_dog")
MIRRORED = (3, 4, 5, 9, 10, 11)  # the left legs
OFFSETS = {1: 0.3, 2: -0.5, 7: 0.2, 8: -0.4}  # thighs and calves: joint rad at the centre tick
TICK_RAD = 2 * math.pi / 4096
BACKENDS = {"dynamixel": DynamixelBackend, "board": BoardBackend}


def mirrored_config(protocol: str) -> HwConfig:
    cfg = load_hw_config(f"servo_dog_{protocol}", spec=SPEC)
    joints = tuple(dataclasses.replace(j, direction=-1 if k in MIRRORED else 1,
                                       zero_offset_rad=OFFSETS.get(k, 0.0))
                   for k, j in enumerate(cfg.joints))
    cfg = dataclasses.replace(cfg, joints=joints)
    cfg.check_against(SPEC)
    return cfg


def wait_for(predicate, timeout_s: float = 2.0) -> None:
    """The devices run in threads, in real time: wait until `predicate()` holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the device side never got there"
        time.sleep(0.005)


@pytest.fixture(params=["dynamixel", "board"])
def mirrored(request, rig):
    return rig(config=mirrored_config(request.param))


def test_each_protocol_gets_its_backend_behind_one_interface(mirrored):
    backend = mirrored.body.backend
    assert isinstance(backend, JointBackend)
    assert type(backend) is BACKENDS[mirrored.body.config.protocol]
    assert backend.links == tuple(mirrored.transports)  # the bus and the IMU board, or the board


def test_a_read_is_the_robot_pose_in_joint_convention(mirrored):
    backend = mirrored.body.backend
    backend.configure()
    state = backend.read()
    assert isinstance(state, RobotState)
    tolerance = TICK_RAD / 2 if mirrored.body.config.protocol == "dynamixel" else 1e-6
    np.testing.assert_allclose(state.joint_pos_rad, mirrored.start_pose_rad, atol=tolerance)
    np.testing.assert_allclose(state.joint_vel_rad_s, 0.0, atol=1e-12)
    np.testing.assert_allclose(state.imu_quat_wxyz, [1, 0, 0, 0])
    np.testing.assert_allclose(state.accel_m_s2, [0, 0, 9.81], rtol=1e-6)
    assert backend.fault_cause(TimeoutError("no reply")) is None


def test_a_command_reaches_the_robot_in_joint_convention_and_the_wire_in_servo_units(mirrored):
    """POSITION: the device side's physics gets the same joint targets (the robot then moves
    there, and a read says so); on the wire, joint 4 (mirrored, no offset) and joint 8
    (offset -0.4 rad) carry servo units worked out by hand. DAMPING and OFF: not stiff."""
    r, backend = mirrored, mirrored.body.backend
    dynamixel = r.body.config.protocol == "dynamixel"
    tolerance = TICK_RAD / 2 if dynamixel else 1e-6
    backend.configure()
    backend.read()
    received = len(r.server.received)
    target = r.start_pose_rad + np.array([0.1, 0.2, -0.2] * 4)
    backend.send(JointCommand(target, CommandMode.POSITION))
    wait_for(lambda: np.allclose(r.kin.goal, target, atol=tolerance) and r.kin.stiff.all())
    wait_for(lambda: np.allclose(backend.read().joint_pos_rad, target, atol=tolerance))

    servo_rad = {4: -(target[4] - 0.0), 8: target[8] - (-0.4)}  # direction * (q - zero)
    if dynamixel:
        (goals,) = r.writes(CT.GOAL_POSITION, received)
        for k, rad in servo_rad.items():
            assert goals[k + 1] == round(2048 + rad / TICK_RAD)  # ids 1..12 in spec order
    else:
        (cmd,) = [m for m in FrameDecoder(HOST_TYPES).feed(bytes(r.server.received[received:]))
                  if isinstance(m, Command)]
        for k, rad in servo_rad.items():
            assert cmd.position_rad[k] == pytest.approx(rad, abs=1e-6)

    backend.send(JointCommand(target, CommandMode.DAMPING))
    wait_for(lambda: not r.kin.stiff.any())
    backend.send(JointCommand(target, CommandMode.POSITION))
    wait_for(lambda: r.kin.stiff.all())
    backend.send(JointCommand(target, CommandMode.OFF))
    wait_for(lambda: not r.kin.stiff.any())


def test_start_up_on_the_bus_asks_a_lost_reply_again_only_within_the_request(rig):
    """The one retry policy on a Dynamixel bus: a servo silent after configure() makes
    activate()'s one read a sync read sent 1 + REPLY_RETRIES times, then DxlTimeout; the body
    asks no more, and no torque comes on."""
    r = rig()
    r.body.configure()
    r.robot.chain.silent_ids.add(4)
    received = len(r.server.received)
    with pytest.raises(DxlTimeout, match=f"servo 4 to SYNC_READ after {1 + REPLY_RETRIES} "):
        r.body.activate()
    reads = [p for p in r.packets(received) if p.instruction == Instruction.SYNC_READ]
    assert len(reads) == 1 + REPLY_RETRIES
    assert r.writes(CT.TORQUE_ENABLE, received) == [] and not r.body.active


def test_start_up_on_the_board_link_is_not_retried_but_waits_longer(rig):
    """The board link never retries: with every reply dropped after configure(), activate()
    sends one HEARTBEAT, waits the start-up STATE timeout (not a tick's) and fails with
    BoardTimeout; no COMMAND follows."""
    r = rig(protocol="board")
    r.body.configure()
    received = len(r.server.received)
    r.server.faults = parse_faults("drop:1.0")
    with pytest.raises(BoardTimeout, match=f"within {STARTUP_STATE_TIMEOUT_S:g} s"):
        r.body.activate()
    sent = FrameDecoder(HOST_TYPES).feed(bytes(r.server.received[received:]))
    assert [type(m) for m in sent] == [Heartbeat] and not r.body.active


def test_host_and_devices_convert_commands_and_states_by_one_calibration():
    """What the host puts on the board link (`joint_to_servo_command`) is what the virtual
    board hands back to the physics (`servo_to_joint_command`), feed-forward torque included:
    a mirrored joint's torque changes sign on the wire and back. States likewise."""
    cal = mirrored_config("board").calibration(SPEC)
    n = SPEC.n_joints
    q = SPEC.default_pose_rad + 0.1
    tau = np.linspace(-0.5, 0.5, n)
    cmd = JointCommand(q, CommandMode.POSITION, np.full(n, 4.0), np.full(n, 0.06), tau)
    wire = cal.joint_to_servo_command(cmd)
    assert wire.position_rad[4] == pytest.approx(-q[4])  # mirrored
    assert wire.position_rad[8] == pytest.approx(q[8] + 0.4)  # offset -0.4
    assert wire.torque_ff_nm[4] == -tau[4] and wire.torque_ff_nm[0] == tau[0]
    np.testing.assert_array_equal(wire.kp_nm_per_rad, cmd.kp_nm_per_rad)
    back = cal.servo_to_joint_command(wire)
    np.testing.assert_allclose(back.position_rad, q)
    np.testing.assert_allclose(back.torque_ff_nm, tau)
    assert back.mode is CommandMode.POSITION

    state = RobotState(1.5, q, np.linspace(-1, 1, n), np.array([1.0, 0, 0, 0]), np.zeros(3),
                       np.array([0, 0, 9.81]), joint_torque_nm=tau)
    servo = cal.joint_to_servo_state(state)
    assert servo.joint_vel_rad_s[4] == -state.joint_vel_rad_s[4]
    assert servo.joint_torque_nm[4] == -tau[4] and servo.time_s == 1.5
    back = cal.servo_to_joint_state(servo)
    np.testing.assert_allclose(back.joint_pos_rad, q)
    np.testing.assert_allclose(back.joint_vel_rad_s, state.joint_vel_rad_s)
    np.testing.assert_allclose(back.joint_torque_nm, tau)
    unmeasured = cal.joint_to_servo_state(dataclasses.replace(state, joint_torque_nm=None))
    assert unmeasured.joint_torque_nm is None


def test_configure_writes_the_position_gain_a_damped_servo_lost(rig):
    """The last episode ended damped (Position P Gain 0) and the servos stayed powered: the
    next configure() writes the configured gain, so undamping restores stiffness, not 0."""
    r = rig()
    for i in r.body.cal.ids:
        r.robot.chain.table(i).set(CT.POSITION_P_GAIN, 0)
    r.body.configure()
    assert all(r.robot.chain.table(i).get(CT.POSITION_P_GAIN) == 640 for i in r.body.cal.ids)
    r.body.activate()
    r.body.write(JointCommand(r.start_pose_rad, CommandMode.DAMPING))
    r.body.write(JointCommand(r.start_pose_rad, CommandMode.POSITION))
    wait_for(lambda: r.writes(CT.POSITION_P_GAIN)[-1] == {i: 640 for i in r.body.cal.ids})
    assert all(r.robot.chain.table(i).get(CT.POSITION_P_GAIN) == 640 for i in r.body.cal.ids)
