"""The commanded heading and the heading hold, against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.agents.export import export_actor, random_observations
from gaitforge.control.bundle import publish_bundle
from gaitforge.control.deploy import Deployment, VirtualClock, run_episode
from gaitforge.control.heading import HeadingHold, HeadingTarget, wrap_rad
from gaitforge.control.logger import EpisodeLogger, read_log
from gaitforge.control.policy_io import (
    ActionConfig,
    ActionMapper,
    HeadingHoldConfig,
    ObservationBuilder,
    ObservationConfig,
)
from gaitforge.control.runner import PolicyRunner
from gaitforge.control.safety import SafetyConfig, SafetyLayer
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, RobotState

SPEC = load_robot_spec("servo_dog")
HOLD = HeadingHoldConfig(gain_per_s=2.0, cap_rad=0.5)


def yawed(rad: float) -> np.ndarray:
    """The IMU quaternion (w, x, y, z) of a level trunk turned `rad` about z."""
    return np.array([np.cos(rad / 2), 0.0, 0.0, np.sin(rad / 2)])


def test_wrap_keeps_angles_in_minus_pi_to_pi():
    assert wrap_rad(0.3) == pytest.approx(0.3)
    assert wrap_rad(-6.2) == pytest.approx(2 * np.pi - 6.2)  # 0.0832
    assert wrap_rad(np.pi) == pytest.approx(-np.pi)


def test_the_target_starts_at_the_heading_turns_at_the_command_and_is_capped():
    t = HeadingTarget(cap_rad=0.5, control_dt_s=0.02)
    assert t.error(yawed(0.3), 1.0) == 0.0 and t.target_rad == pytest.approx(0.3)
    # told 1 rad/s for one tick: the target is at 0.32, the trunk still at 0.3
    assert t.error(yawed(0.3), 1.0) == pytest.approx(-0.02)
    # the trunk jumps to 1.0: 0.68 ahead of the target at 0.32, capped at 0.5 (target 0.5)
    assert t.error(yawed(1.0), 0.0) == pytest.approx(0.5)
    assert t.target_rad == pytest.approx(0.5)
    # across the +-pi seam: target 3.1, trunk at -3.1, 0.0832 ahead
    t.reset()
    t.error(yawed(3.1), 0.0)
    assert t.error(yawed(-3.1), 0.0) == pytest.approx(2 * np.pi - 6.2)


def test_the_hold_corrects_the_yaw_rate_by_gain_times_the_error():
    hold = HeadingHold(HOLD, control_dt_s=0.02)
    command = np.array([0.3, 0.0, 0.1])
    np.testing.assert_allclose(hold.command(command, yawed(0.0)), [0.3, 0.0, 0.1])
    # target 0.002 after one tick at 0.1 rad/s; the trunk at 0.05: 0.048 ahead, 2 x 0.048 less
    np.testing.assert_allclose(hold.command(command, yawed(0.05)), [0.3, 0.0, 0.1 - 0.096])
    np.testing.assert_array_equal(command, [0.3, 0.0, 0.1])  # the caller's is untouched
    off = HeadingHold(HeadingHoldConfig(), control_dt_s=0.02)
    off.command(command, yawed(0.0))
    np.testing.assert_array_equal(off.command(command, yawed(0.4)), command)


def test_bad_hold_settings_name_the_field():
    with pytest.raises(ValueError, match="gain_per_s"):
        HeadingHoldConfig(gain_per_s=-1.0)
    with pytest.raises(ValueError, match="cap_rad"):
        HeadingHoldConfig(cap_rad=0.0)


def test_the_layout_records_the_hold_and_rebuilds_it():
    builder = ObservationBuilder(SPEC, ObservationConfig(heading_hold=HOLD))
    command = next(t for t in builder.layout if t["name"] == "command")
    assert command["heading_hold"] == {"gain_per_s": 2.0, "cap_rad": 0.5}
    assert ObservationBuilder.from_layout(SPEC, builder.layout).config.heading_hold == HOLD
    plain = ObservationBuilder(SPEC).layout  # without a hold the layout is as before
    assert "heading_hold" not in next(t for t in plain if t["name"] == "command")
    assert not ObservationBuilder.from_layout(SPEC, plain).config.heading_hold.enabled
    bad = [dict(t, heading_hold={"gain": 1.0}) if t["name"] == "command" else t for t in plain]
    with pytest.raises(ValueError, match="observation layout"):
        ObservationBuilder.from_layout(SPEC, bad)


class TurningBody:
    """Servos that reach their target by the next read, on a trunk that turns 0.01 rad a read."""

    def __init__(self):
        self.q, self.t, self.reads = SPEC.default_pose_rad.copy(), 0.0, 0

    def configure(self):
        pass

    def activate(self):
        pass

    def deactivate(self):
        pass

    def read(self) -> RobotState:
        self.reads += 1
        return RobotState(time_s=self.t, joint_pos_rad=self.q.copy(),
                          joint_vel_rad_s=np.zeros(12), imu_quat_wxyz=yawed(0.01 * self.reads),
                          gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0, 0, 9.81]))

    def write(self, command):
        if command.mode is CommandMode.POSITION:
            self.q = command.position_rad.copy()
        self.t += 0.02


def test_the_deploy_tick_holds_the_heading_the_policy_started_at(agent, bundle_manifest,
                                                                  tmp_path):
    builder = ObservationBuilder(SPEC, ObservationConfig(heading_hold=HOLD))
    staging = tmp_path / "staging"
    staging.mkdir()
    export_actor(agent, staging, random_observations(agent, 16))
    bundle = publish_bundle(staging, tmp_path / "b", bundle_manifest(
        observation_layout=builder.layout), overwrite=False)
    clock = VirtualClock()
    safety = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.2, exit_damping_s=0.1), clock=clock)
    logger = EpisodeLogger(tmp_path / "ep.gflog", {"robot": "servo_dog"}, n_joints=12,
                           obs_dim=builder.size)
    d = Deployment(TurningBody(), PolicyRunner(bundle.path), builder,
                   ActionMapper(SPEC, ActionConfig(scale_rad=0.3)), safety, control_dt_s=0.02,
                   command=(0.2, 0.0, 0.0), logger=logger)
    run_episode(d, 0.4, clock, clock.sleep)
    logger.close()
    log = read_log(tmp_path / "ep.gflog")
    start = next(t["start"] for t in builder.layout if t["name"] == "command")
    yaw_seen = log.ticks["observation"][:, start + 2] / 0.25  # the command term's yaw scale
    first = int(np.argmax(np.isfinite(log.ticks["action"][:, 0])))
    assert first > 0 and np.all(yaw_seen[:first] == 0.0)  # soft start: nothing to hold yet
    # the j-th policy tick: the trunk is 0.01 j past the heading it started at, 2 x that less
    j = np.arange(1, 11)
    np.testing.assert_allclose(yaw_seen[first:first + 10], -0.02 * j, atol=1e-6)
