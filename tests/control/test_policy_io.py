"""policy_io: projected gravity, the observation layout and its numbers, the action mapping."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest

from gaitforge import configs
from gaitforge.control.policy_io import (
    ActionConfig,
    ActionMapper,
    GaitConfig,
    ObservationBuilder,
    ObservationConfig,
    projected_gravity,
)
from gaitforge.robots.configio import from_dict, load_yaml
from gaitforge.robots.types import CommandMode, RobotState

H = math.sqrt(0.5)  # cos 45° = sin 45°: the half angle of a 90° rotation


@pytest.mark.parametrize(("quat", "expected"), [
    # identity: gravity straight down the body z axis
    ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    # +90° about x (rolled onto the left side): R = [[1,0,0],[0,0,-1],[0,1,0]],
    # R^T (0,0,-1) = (0, -1, 0): gravity points along body -y
    ((H, H, 0.0, 0.0), (0.0, -1.0, 0.0)),
    # +90° about y (nose down): R = [[0,0,1],[0,1,0],[-1,0,0]], R^T (0,0,-1) = (1, 0, 0)
    ((H, 0.0, H, 0.0), (1.0, 0.0, 0.0)),
    # -90° about y (nose up): gravity along body -x
    ((H, 0.0, -H, 0.0), (-1.0, 0.0, 0.0)),
    # 180° about x (upside down): gravity along body +z
    ((0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    # any yaw leaves gravity alone: 90° about z
    ((H, 0.0, 0.0, H), (0.0, 0.0, -1.0)),
])
def test_projected_gravity_hand_computed(quat, expected):
    np.testing.assert_allclose(projected_gravity(np.array(quat)), expected, atol=1e-15)


def test_projected_gravity_matches_mujoco_rotation_for_random_quaternions():
    """Cross-check against an independent implementation: R from mujoco.mju_quat2Mat."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, q)
        expected = mat.reshape(3, 3).T @ np.array([0.0, 0.0, -1.0])
        np.testing.assert_allclose(projected_gravity(q), expected, atol=1e-12)


def test_observation_layout(robot_spec):
    spec = robot_spec("servo_dog")
    builder = ObservationBuilder(spec)
    n = spec.n_joints  # 12
    layout = builder.layout
    assert [t["name"] for t in layout] == [
        "projected_gravity", "gyro", "joint_pos", "joint_vel", "last_action", "command"]
    assert [t["size"] for t in layout] == [3, 3, n, n, n, 3]
    # starts are the running sum of sizes: 0, 3, 6, 6+12, 18+12, 30+12
    assert [t["start"] for t in layout] == [0, 3, 6, 18, 30, 42]
    assert builder.size == 45  # 3 + 3 + 3*12 + 3
    assert [t["unit"] for t in layout] == ["1", "rad/s", "rad", "rad/s", "1", "m/s,m/s,rad/s"]
    # default scales
    assert layout[0]["scale"] == [1.0] * 3
    assert layout[1]["scale"] == [0.25] * 3
    assert layout[2]["scale"] == [1.0] * n
    assert layout[3]["scale"] == [0.05] * n
    assert layout[4]["scale"] == [1.0] * n
    assert layout[5]["scale"] == [2.0, 2.0, 0.25]


def hand_made_state(spec) -> RobotState:
    n = spec.n_joints
    return RobotState(
        time_s=1.5,
        joint_pos_rad=spec.default_pose_rad + 0.01 * np.arange(n),  # offsets 0, 0.01, ... 0.11
        joint_vel_rad_s=np.arange(1.0, n + 1.0),  # 1 .. 12 rad/s
        imu_quat_wxyz=np.array([H, 0.0, H, 0.0]),  # nose down 90°: gravity (1, 0, 0)
        gyro_rad_s=np.array([0.4, -0.8, 1.2]),
        accel_m_s2=np.array([0.0, 0.0, 9.81]),
    )


def test_build_numbers_with_default_scales(robot_spec):
    spec = robot_spec("servo_dog")
    n = spec.n_joints
    builder = ObservationBuilder(spec)
    last_action = np.linspace(-1.0, 1.0, n)
    command = np.array([0.5, -0.25, 2.0])
    obs = builder.build(hand_made_state(spec), last_action, command)
    assert obs.dtype == np.float32 and obs.shape == (45,)
    np.testing.assert_allclose(obs[0:3], [1.0, 0.0, 0.0], atol=1e-7)  # projected gravity
    np.testing.assert_allclose(obs[3:6], [0.1, -0.2, 0.3], rtol=1e-6)  # 0.25 * (0.4, -0.8, 1.2)
    np.testing.assert_allclose(obs[6:18], 0.01 * np.arange(n), atol=1e-7)  # q - default
    np.testing.assert_allclose(obs[18:30], 0.05 * np.arange(1, n + 1), rtol=1e-6)  # 0.05..0.6
    np.testing.assert_allclose(obs[30:42], last_action, rtol=1e-6)
    # command (0.5, -0.25, 2.0) * (2, 2, 0.25) = (1.0, -0.5, 0.5)
    np.testing.assert_allclose(obs[42:45], [1.0, -0.5, 0.5], rtol=1e-6)


def test_build_numbers_with_custom_scales(robot_spec):
    spec = robot_spec("a1")
    cfg = ObservationConfig(gyro_scale=2.0, joint_pos_scale=10.0, joint_vel_scale=0.5,
                            command_scale=(1.0, 3.0, 4.0))
    builder = ObservationBuilder(spec, cfg)
    state = hand_made_state(spec)
    state.imu_quat_wxyz = np.array([1.0, 0.0, 0.0, 0.0])
    obs = builder.build(state, np.zeros(12), np.array([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(obs[0:3], [0.0, 0.0, -1.0])
    np.testing.assert_allclose(obs[3:6], [0.8, -1.6, 2.4], rtol=1e-6)  # 2 * gyro
    np.testing.assert_allclose(obs[6:18], 0.1 * np.arange(12), rtol=1e-5, atol=1e-6)  # 10 * 0.01 i
    np.testing.assert_allclose(obs[18:30], 0.5 * np.arange(1, 13), rtol=1e-6)
    np.testing.assert_allclose(obs[42:45], [0.1, 0.6, 1.2], rtol=1e-6)  # (1, 3, 4) * command
    assert builder.layout[5]["scale"] == [1.0, 3.0, 4.0]


def test_build_does_not_touch_its_inputs(robot_spec):
    spec = robot_spec("servo_dog")
    state = hand_made_state(spec)
    q = state.joint_pos_rad.copy()
    last = np.full(12, 0.5)
    obs = ObservationBuilder(spec).build(state, last, np.zeros(3))
    obs[:] = 99.0
    np.testing.assert_array_equal(state.joint_pos_rad, q)
    np.testing.assert_array_equal(last, 0.5)


def test_action_targets_default_scale(robot_spec):
    """targets = default + 0.25 * clip(a, -1, 1); servo_dog default per leg (0, 0.8, -1.5)."""
    spec = robot_spec("servo_dog")
    mapper = ActionMapper(spec)
    assert mapper.size == 12
    a = np.array([1.0, 0.5, -1.0, 2.0, -3.0, 0.0, 0.2, -0.4, 0.8, 0.0, 0.0, 0.0])
    # clip: 2 -> 1, -3 -> -1
    expected = np.array([
        0.0 + 0.25, 0.8 + 0.125, -1.5 - 0.25,
        0.0 + 0.25, 0.8 - 0.25, -1.5,
        0.0 + 0.05, 0.8 - 0.1, -1.5 + 0.2,
        0.0, 0.8, -1.5,
    ])
    np.testing.assert_allclose(mapper.targets(a), expected, atol=1e-15)
    command = mapper.command(a)
    assert command.mode is CommandMode.POSITION
    np.testing.assert_allclose(command.position_rad, expected, atol=1e-15)
    assert command.kp_nm_per_rad is None and command.kd_nm_s_per_rad is None


def test_action_targets_clipped_to_the_joint_limits(robot_spec):
    """scale 1.5: hip 0 ± 1.5 -> ±0.8 (limit); thigh 0.8 ± 1.5 = 2.3 / -0.7 (inside);
    calf -1.5 + 1.5 = 0.0 -> -0.5 (upper limit), -1.5 - 1.5 = -3.0 -> -2.6 (lower limit)."""
    spec = robot_spec("servo_dog")
    mapper = ActionMapper(spec, ActionConfig(scale_rad=1.5))
    up = mapper.targets(np.ones(12))
    down = mapper.targets(-np.ones(12))
    np.testing.assert_allclose(up, np.tile([0.8, 2.3, -0.5], 4), atol=1e-12)
    np.testing.assert_allclose(down, np.tile([-0.8, -0.7, -2.6], 4), atol=1e-12)
    # half action: hip 0.75 (inside 0.8), thigh 1.55, calf -0.75 (inside -0.5)
    np.testing.assert_allclose(mapper.targets(np.full(12, 0.5)),
                               np.tile([0.75, 1.55, -0.75], 4), atol=1e-12)


def test_action_layout_and_config(robot_spec):
    spec = robot_spec("mini_cheetah")
    mapper = ActionMapper(spec, ActionConfig(scale_rad=0.3))
    layout = mapper.layout
    assert layout["joint_order"] == list(spec.joint_names)
    assert layout["default_pose_rad"] == spec.default_pose_rad.tolist()
    assert layout["scale_rad"] == 0.3 and layout["clip"] == [-1.0, 1.0]
    with pytest.raises(ValueError, match="scale_rad"):
        ActionConfig(scale_rad=0.0)


TROT = GaitConfig(frequency_hz=2.0, phase_offset=(0.0,) * 3 + (0.5,) * 6 + (0.0,) * 3,
                  swing_amplitude_rad=(0.0, 0.25, -0.5) * 4)


def test_gait_pattern_adds_the_swing_at_the_state_time(robot_spec):
    """2 Hz: at t = 0.125 s the phase is a quarter cycle; legs with offset 0 are at the top of
    the swing (sin = 1: thigh +0.25, calf -0.5), legs with offset 0.5 at sin = -1 -> 0."""
    spec = robot_spec("servo_dog")
    mapper = ActionMapper(spec, ActionConfig(scale_rad=0.3, gait=TROT))
    swing, stance = [0.0, 0.8 + 0.25, -1.5 - 0.5], [0.0, 0.8, -1.5]
    np.testing.assert_allclose(mapper.targets(np.zeros(12), time_s=0.125),
                               swing + stance + stance + swing, atol=1e-12)
    # half a cycle later the diagonals swap; at t = 0 nothing is lifted (sin 0 = 0)
    np.testing.assert_allclose(mapper.targets(np.zeros(12), time_s=0.375),
                               stance + swing + swing + stance, atol=1e-12)
    np.testing.assert_allclose(mapper.targets(np.zeros(12), time_s=0.0), stance * 4, atol=1e-12)
    assert mapper.layout["gait"]["frequency_hz"] == 2.0


def test_gait_phase_observation_from_the_state_clock(robot_spec):
    spec = robot_spec("servo_dog")
    builder = ObservationBuilder(spec, gait=TROT)
    assert builder.size == 47 and builder.layout[-1]["name"] == "gait_phase"
    state = RobotState(time_s=0.125, joint_pos_rad=spec.default_pose_rad.copy(),
                       joint_vel_rad_s=np.zeros(12), imu_quat_wxyz=np.array([1.0, 0, 0, 0]),
                       gyro_rad_s=np.zeros(3), accel_m_s2=np.zeros(3))
    obs = builder.build(state, np.zeros(12), np.zeros(3))
    np.testing.assert_allclose(obs[-2:], [1.0, 0.0], atol=1e-7)  # sin, cos of pi/2


def test_gait_config_is_checked_against_the_robot(robot_spec):
    with pytest.raises(ValueError, match="phase_offset has 2 entries but swing"):
        GaitConfig(frequency_hz=1.0, phase_offset=(0.0, 0.5), swing_amplitude_rad=(0.1,))
    short = GaitConfig(frequency_hz=1.0, phase_offset=(0.0,), swing_amplitude_rad=(0.1,))
    with pytest.raises(ValueError, match="one entry per joint of servo_dog"):
        ActionMapper(robot_spec("servo_dog"), ActionConfig(gait=short))
    with pytest.raises(ValueError, match="frequency_hz must be >= 0"):
        GaitConfig(frequency_hz=-1.0)


def test_gait_stride_follows_the_forward_command(robot_spec):
    """stride 1 rad per m/s on the thighs: at t = 0 (cos = 1 for offset 0, cos = -1 for 0.5)
    a 0.3 m/s command moves the offset-0 thighs +0.3 and the others -0.3; no lift (sin 0)."""
    spec = robot_spec("servo_dog")
    trot = GaitConfig(frequency_hz=2.0, phase_offset=TROT.phase_offset,
                      swing_amplitude_rad=TROT.swing_amplitude_rad,
                      stride_rad_per_m_s=(0.0, 1.0, 0.0) * 4)
    mapper = ActionMapper(spec, ActionConfig(gait=trot))
    a, b = [0.0, 0.8 + 0.3, -1.5], [0.0, 0.8 - 0.3, -1.5]
    np.testing.assert_allclose(mapper.targets(np.zeros(12), 0.0, [0.3, 0.0, 0.0]),
                               a + b + b + a, atol=1e-12)
    np.testing.assert_allclose(mapper.targets(np.zeros(12), 0.0), [0, 0.8, -1.5] * 4, atol=1e-12)
    with pytest.raises(ValueError, match="stride_rad_per_m_s has 1"):
        GaitConfig(frequency_hz=1.0, phase_offset=(0.0, 0.5), swing_amplitude_rad=(0.1, 0.1),
                   stride_rad_per_m_s=(1.0,))


def test_gait_strides_follow_the_lateral_and_yaw_commands(robot_spec):
    """At t = 0 (cos +1 for offset 0: FR, RL; -1 for 0.5: FL, RR), with hips -0.9 rad per m/s
    of vy and thighs +-0.09 rad per rad/s of yaw (right legs +, left -): vy 0.1 moves the FR
    and RL hips -0.09 and the FL and RR hips +0.09; yaw 0.5 moves the FR thigh +0.045, FL
    -0.045 * -1 = +0.045, RR 0.045 * -1 = -0.045, RL -0.045."""
    spec = robot_spec("servo_dog")
    trot = GaitConfig(frequency_hz=2.0, phase_offset=TROT.phase_offset,
                      swing_amplitude_rad=TROT.swing_amplitude_rad,
                      stride_rad_per_m_s_lateral=(-0.9, 0.0, 0.0) * 4,
                      stride_rad_per_rad_s=(0.0, 0.09, 0.0, 0.0, -0.09, 0.0) * 2)
    mapper = ActionMapper(spec, ActionConfig(gait=trot))
    offset = mapper.targets(np.zeros(12), 0.0, [0.0, 0.1, 0.5]) - [0, 0.8, -1.5] * 4
    np.testing.assert_allclose(offset, [-0.09, 0.045, 0, 0.09, 0.045, 0,
                                        0.09, -0.045, 0, -0.09, -0.045, 0], atol=1e-12)
    # recorded in the layout only when set: a bundle from before them rebuilds unchanged
    assert "stride_rad_per_rad_s" in mapper.layout["gait"]
    assert "stride_rad_per_rad_s" not in ActionMapper(spec, ActionConfig(gait=TROT)).layout["gait"]
    again = ActionMapper.from_layout(spec, mapper.layout)
    np.testing.assert_array_equal(again.targets(np.zeros(12), 0.1, [0.2, -0.1, 0.3]),
                                  mapper.targets(np.zeros(12), 0.1, [0.2, -0.1, 0.3]))
    with pytest.raises(ValueError, match="phase_offset has 2 entries but stride_rad_per_rad_s "
                       "has 3"):
        GaitConfig(frequency_hz=1.0, phase_offset=(0.0, 0.5), swing_amplitude_rad=(0.1, 0.1),
                   stride_rad_per_rad_s=(1.0, 2.0, 3.0))


def test_builder_and_mapper_rebuild_from_their_layouts(robot_spec):
    spec = robot_spec("servo_dog")
    cfg = ObservationConfig(gyro_scale=0.5, joint_pos_scale=2.0, joint_vel_scale=0.1,
                            command_scale=(1.0, 3.0, 0.5))
    builder = ObservationBuilder(spec, cfg, TROT)
    mapper = ActionMapper(spec, ActionConfig(scale_rad=0.4, gait=TROT))
    assert builder.layout[-1]["frequency_hz"] == TROT.frequency_hz
    again = ObservationBuilder.from_layout(spec, builder.layout)
    state = RobotState(time_s=0.31, joint_pos_rad=spec.default_pose_rad + 0.1,
                       joint_vel_rad_s=np.full(12, 2.0), imu_quat_wxyz=np.array([1.0, 0, 0, 0]),
                       gyro_rad_s=np.ones(3), accel_m_s2=np.zeros(3))
    args = (state, np.full(12, 0.5), np.array([0.3, 0.1, 0.2]))
    np.testing.assert_array_equal(again.build(*args), builder.build(*args))
    mapped = ActionMapper.from_layout(spec, mapper.layout)
    np.testing.assert_array_equal(mapped.targets(np.full(12, 0.5), 0.31, [0.3, 0, 0]),
                                  mapper.targets(np.full(12, 0.5), 0.31, [0.3, 0, 0]))


def test_a_layout_this_code_cannot_build_is_refused_naming_the_term(robot_spec):
    spec = robot_spec("servo_dog")
    layout = ObservationBuilder(spec).layout
    layout[1]["unit"] = "deg/s"
    with pytest.raises(ValueError, match="observation term 'gyro' is recorded as"):
        ObservationBuilder.from_layout(spec, layout)
    extra = [*ObservationBuilder(spec).layout, {"name": "foot_forces", "start": 45, "size": 4}]
    with pytest.raises(ValueError, match="observation term 'foot_forces'"):
        ObservationBuilder.from_layout(spec, extra)
    action = ActionMapper(spec).layout
    with pytest.raises(ValueError, match="action.joint_order differs.*0: FL_hip != FR_hip"):
        ActionMapper.from_layout(spec, {**action, "joint_order": [
            action["joint_order"][3], *action["joint_order"][1:3], action["joint_order"][0],
            *action["joint_order"][4:]]})
    with pytest.raises(ValueError, match="action.clip is recorded as"):
        ActionMapper.from_layout(spec, {**action, "clip": [-2.0, 2.0]})


# Every robot, with its own robot config (configs/robots/ROBOT.yaml) -------------------------
ROBOTS = ("servo_dog", "a1", "mini_cheetah", "minitaur")


@pytest.mark.parametrize("robot", ROBOTS)
def test_every_robot_with_its_own_action_config(robot_spec, robot):
    """Observation 9 + 3 n (+ 2 for a gait clock), in the spec's joint order; zero action
    targets the default pose, +-1 the default +- the robot's scale within the limits; its gait
    (servo_dog's and minitaur's files have one) fits its joints and lifts every leg."""
    spec = robot_spec(robot)
    n = spec.n_joints
    data = load_yaml(Path(configs.__file__).parent / "robots" / f"{robot}.yaml")
    action = from_dict(ActionConfig, data["env"]["action"], source=robot)
    mapper = ActionMapper(spec, action)
    builder = ObservationBuilder(spec, gait=action.gait)
    assert builder.size == 9 + 3 * n + (2 if action.gait.enabled else 0)
    assert mapper.layout["joint_order"] == list(spec.joint_names)
    # (a gait lifts nothing at t = 0, sin 0 = 0, and strides nothing without a command)
    np.testing.assert_allclose(mapper.targets(np.zeros(n)), spec.default_pose_rad, atol=1e-12)
    for sign in (1.0, -1.0):
        np.testing.assert_allclose(mapper.targets(np.full(n, sign)),
                                   np.clip(spec.default_pose_rad + sign * action.scale_rad,
                                           spec.lower_rad, spec.upper_rad), atol=1e-12)
    if action.gait.enabled:
        lifted = np.abs(action.gait.offsets_rad(0.25 / action.gait.frequency_hz)) \
            + np.abs(action.gait.offsets_rad(0.75 / action.gait.frequency_hz))
        for leg in np.array_split(np.arange(n), len(spec.feet)):
            assert lifted[leg].max() > 0.1, (robot, leg)
