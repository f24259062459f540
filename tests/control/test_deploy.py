"""The deploy tick on a mock body and simulated time: soft start, policy, shutdown; faults
end in the safe state; nothing non-finite or out of limits ever reaches the body."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.bundle import BundleError
from gaitforge.control.deploy import Deployment, VirtualClock, run_episode
from gaitforge.control.logger import EpisodeLogger, read_log, transitions
from gaitforge.control.policy_io import ActionConfig, ActionMapper, ObservationBuilder
from gaitforge.control.runner import PolicyRunner
from gaitforge.control.safety import SafetyConfig, SafetyLayer
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, LifecycleError, RobotState

SPEC = load_robot_spec("servo_dog")
DT = 0.02
TILTED = np.array([np.cos(0.5), np.sin(0.5), 0.0, 0.0])  # 1.0 rad about x


class MockBody:
    """Servos that reach their target by the next read; upright unless told otherwise."""

    def __init__(self, fail_reads_from: int | None = None, tilt_from: int | None = None):
        self.q = SPEC.default_pose_rad + 0.2  # starts away from the default pose
        self.t, self.reads, self.active = 0.0, 0, False
        self.fail_reads_from, self.tilt_from = fail_reads_from, tilt_from
        self.commands = []

    def configure(self):
        pass

    def activate(self):
        self.active = True

    def deactivate(self):
        self.active = False

    def read(self) -> RobotState:
        self.reads += 1
        if self.fail_reads_from is not None and self.reads > self.fail_reads_from:
            raise TimeoutError("no reply")
        tilted = self.tilt_from is not None and self.reads > self.tilt_from
        return RobotState(time_s=self.t, joint_pos_rad=self.q.copy(),
                          joint_vel_rad_s=np.zeros(12),
                          imu_quat_wxyz=TILTED if tilted else np.array([1.0, 0, 0, 0]),
                          gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0, 0, 9.81]))

    def write(self, command):
        if not self.active:
            raise LifecycleError("write while inactive")
        self.commands.append(command)
        if command.mode is CommandMode.POSITION:
            self.q = command.position_rad.copy()
        self.t += DT


def _deploy(bundle_dir, tmp_path, body, duration_s=1.0, mapper=None):
    clock = VirtualClock()
    cfg = SafetyConfig(soft_start_s=0.5, exit_damping_s=0.1)
    safety = SafetyLayer(SPEC, cfg, clock=clock)
    builder = ObservationBuilder(SPEC)
    mapper = mapper or ActionMapper(SPEC, ActionConfig(scale_rad=0.3))
    logger = EpisodeLogger(tmp_path / "ep.gflog", {"robot": "servo_dog", "body": "mock"},
                           n_joints=12, obs_dim=builder.size)
    d = Deployment(body, PolicyRunner(bundle_dir), builder, mapper, safety, control_dt_s=DT,
                   command=(0.3, 0.0, 0.0), logger=logger)
    result = run_episode(d, duration_s, clock, clock.sleep)
    logger.close()
    return result, read_log(tmp_path / "ep.gflog")


def _check_commands(commands):
    max_step = SafetyConfig().max_step_rad
    lo, hi = SPEC.lower_rad + 0.05, SPEC.upper_rad - 0.05
    prev = None
    for c in commands:
        assert np.all(np.isfinite(c.position_rad))
        if c.mode is CommandMode.POSITION:
            assert np.all(c.position_rad >= lo - 1e-12) and np.all(c.position_rad <= hi + 1e-12)
            if prev is not None:
                assert np.max(np.abs(c.position_rad - prev)) <= max_step + 1e-12
            prev = c.position_rad


def test_soft_start_then_policy_then_damping_then_off(bundle_dir, tmp_path):
    body = MockBody()
    result, log = _deploy(bundle_dir, tmp_path, body, duration_s=1.0)
    assert result.policy_ticks == 50 and result.end_phase == "finished"
    modes = [c.mode for c in body.commands]
    # 0.5 s soft start (25 ticks + the tick that hands over), 50 policy ticks, then shutdown
    first_policy = int(np.argmax(np.isfinite(log.ticks["action"][:, 0])))
    assert 25 <= first_policy <= 27
    assert np.all(np.isnan(log.ticks["action"][:first_policy]))
    assert modes[-1] is CommandMode.OFF and CommandMode.DAMPING in modes
    assert modes.index(CommandMode.DAMPING) > first_policy + 49
    _check_commands(body.commands)
    assert not body.active
    pairs = transitions(log)
    assert len(pairs["obs"]) == 49 and not pairs["done"].any()
    np.testing.assert_array_equal(pairs["next_obs"][:-1], pairs["obs"][1:])


def test_lost_reads_end_in_damping_then_off(bundle_dir, tmp_path):
    body = MockBody(fail_reads_from=40)
    result, log = _deploy(bundle_dir, tmp_path, body, duration_s=5.0)
    assert result.read_errors > 0
    kinds = [e["kind"] for e in log.events]
    assert "read_error" in kinds and "watchdog_damping" in kinds
    assert body.commands[-1].mode is CommandMode.OFF
    assert result.policy_ticks < 250
    _check_commands(body.commands)


def test_tilt_latches_an_estop_and_the_episode_shuts_down(bundle_dir, tmp_path):
    body = MockBody(tilt_from=35)
    result, log = _deploy(bundle_dir, tmp_path, body, duration_s=5.0)
    assert "tilt_estop" in [e["kind"] for e in log.events]
    assert body.commands[-1].mode is CommandMode.OFF
    assert result.policy_ticks <= 10


def test_a_body_whose_policy_io_differs_is_refused_before_any_write(bundle_dir, tmp_path):
    body = MockBody()
    with pytest.raises(BundleError, match="action.scale_rad"):
        _deploy(bundle_dir, tmp_path, body, mapper=ActionMapper(SPEC, ActionConfig(0.25)))
    assert body.commands == []
