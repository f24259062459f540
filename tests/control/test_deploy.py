"""The deploy tick on a mock body and simulated time: soft start, policy, shutdown; faults
end in the safe state; nothing non-finite or out of limits ever reaches the body."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from gaitforge.control.bundle import BundleError
from gaitforge.control.deploy import Deployment, VirtualClock, run_episode
from gaitforge.control.estimator import VelocityEstimator
from gaitforge.control.logger import (
    TRUTH_FIELDS,
    EpisodeLogger,
    LogWriteError,
    read_log,
    transitions,
)
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


def _deploy(bundle_dir, tmp_path, body, duration_s=1.0, mapper=None, runner=None,
            logger_cls=EpisodeLogger, on_tick=None, estimator=None):
    clock = VirtualClock()
    cfg = SafetyConfig(soft_start_s=0.5, exit_damping_s=0.1)
    safety = SafetyLayer(SPEC, cfg, clock=clock)
    builder = ObservationBuilder(SPEC)
    mapper = mapper or ActionMapper(SPEC, ActionConfig(scale_rad=0.3))
    logger = logger_cls(tmp_path / "ep.gflog", {"robot": "servo_dog", "body": "mock"},
                        n_joints=12, obs_dim=builder.size,
                        n_feet=0 if estimator is None else len(SPEC.feet))
    d = Deployment(body, runner or PolicyRunner(bundle_dir), builder, mapper, safety,
                   control_dt_s=DT, command=(0.3, 0.0, 0.0), logger=logger, on_tick=on_tick,
                   estimator=estimator)
    result = run_episode(d, duration_s, clock, clock.sleep)
    if d.logger is not None:
        logger.close()
    return result, read_log(tmp_path / "ep.gflog")


def _ends_through_damping(commands, after: int):
    """From command `after` on: damping for exit_damping_s (0.1 s = 5 ticks), then off."""
    modes = [c.mode for c in commands[after:]]
    assert modes[-1] is CommandMode.OFF
    first_off = modes.index(CommandMode.OFF)
    assert first_off >= 4 and set(modes[:first_off]) == {CommandMode.DAMPING}, modes[:8]


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
    # every policy tick is a transition; the last one's next observation is the first
    # shutdown tick's (observations are logged every tick), and it is a truncation
    assert len(pairs["obs"]) == 50 and not pairs["done"].any()
    assert pairs["truncated"][-1] and not pairs["truncated"][:-1].any()
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


def test_a_full_episode_is_completed(bundle_dir, tmp_path):
    result, _ = _deploy(bundle_dir, tmp_path, MockBody(), duration_s=0.5)
    assert (result.outcome, result.reason) == ("completed", "ran all 25 policy ticks")


def test_an_estop_and_a_lost_state_are_named_outcomes(bundle_dir, tmp_path):
    result, _ = _deploy(bundle_dir, tmp_path, MockBody(tilt_from=35), duration_s=5.0)
    assert result.outcome == "estop" and "tilt_estop" in result.reason
    result, _ = _deploy(bundle_dir, tmp_path, MockBody(fail_reads_from=40), duration_s=5.0)
    assert result.outcome == "watchdog" and "watchdog_damping" in result.reason


class FailingRunner:
    """The bundle's runner, until tick `fail_at` of the policy: then it raises (a bug)."""

    def __init__(self, bundle_dir, fail_at: int):
        self.inner, self.fail_at, self.calls = PolicyRunner(bundle_dir), fail_at, 0

    def check_body(self, *args):
        self.inner.check_body(*args)

    def act(self, obs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ZeroDivisionError("a bug in the actor")
        return self.inner.act(obs)


def test_an_exception_in_a_tick_ends_through_damping_and_is_logged(bundle_dir, tmp_path):
    body = MockBody()
    result, log = _deploy(bundle_dir, tmp_path, body, duration_s=2.0,
                          runner=FailingRunner(bundle_dir, fail_at=10))
    assert result.outcome == "error" and "ZeroDivisionError: a bug in the actor" in result.reason
    assert result.policy_ticks == 9
    first_policy = int(np.argmax(np.isfinite(log.ticks["action"][:, 0])))
    _ends_through_damping(body.commands, first_policy + 9)
    # the failed tick still wrote (damping) and every command sent is in the log
    assert len(log.ticks["command_mode"]) == len(body.commands)
    np.testing.assert_array_equal(log.ticks["command_mode"][-1], 2)  # OFF
    _check_commands(body.commands)


class LoggerThatFillsTheDisk(EpisodeLogger):
    """log_tick raises LogWriteError from tick 40 on, as the writer does when the disk fills."""

    def log_tick(self, tick, *args, **kwargs):
        if tick >= 40:
            raise LogWriteError(f"episode log writer for {self.path} failed: "
                                "OSError(28, 'No space left on device')")
        super().log_tick(tick, *args, **kwargs)


def test_a_log_that_cannot_be_written_ends_the_episode_safely(bundle_dir, tmp_path):
    body = MockBody()
    result, log = _deploy(bundle_dir, tmp_path, body, duration_s=2.0,
                          logger_cls=LoggerThatFillsTheDisk)
    assert result.outcome == "log_failed" and "No space left" in result.reason
    # tick 40 had written its policy command when its log record failed; damping from 41 on
    assert body.commands[40].mode is CommandMode.POSITION
    _ends_through_damping(body.commands, 41)
    assert len(log.ticks["tick"]) == 40 and not log.complete  # readable up to the failure


def test_sigint_and_sigterm_end_through_damping(bundle_dir, tmp_path):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGINT, signal.SIGTERM):
        body = MockBody()
        ticks = []

        def send(state, action, command, phase, sig=sig, ticks=ticks):
            ticks.append(phase)
            if len(ticks) == 35:
                os.kill(os.getpid(), sig)

        result, log = _deploy(bundle_dir, tmp_path, body, duration_s=5.0, on_tick=send)
        assert result.outcome == "interrupted" and sig.name in result.reason
        _ends_through_damping(body.commands, 35)
        assert result.policy_ticks < 20
    # the handlers are restored: Python's own, or SIG_IGN where the test runner started with
    # SIGINT ignored (a job put in the background by a non-interactive shell)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_the_estimate_is_logged_every_tick_and_the_truth_is_nan_on_a_real_body(bundle_dir,
                                                                              tmp_path):
    """The mock body is upright, its trunk still (the accelerometer reads g): the estimator
    stands on the feet its legs put lowest at every tick and says 0."""
    body = MockBody(fail_reads_from=60)
    estimator = VelocityEstimator(SPEC)
    result, log = _deploy(bundle_dir, tmp_path, body, estimator=estimator)
    t = log.ticks
    assert len(log) == result.ticks and result.read_errors > 0
    valid = t["state_valid"]
    assert valid[:50].all() and not valid.all()
    np.testing.assert_array_equal(t["est_lin_vel_m_s"][valid], 0.0)
    contact = t["est_foot_contact"][valid]
    assert contact.any(axis=1).all()
    assert np.isnan(t["est_lin_vel_m_s"][~valid]).all()  # no state read: no estimate
    for name in TRUTH_FIELDS:
        assert np.isnan(t[name]).all(), name
    assert log.metadata["n_feet"] == 4
    with pytest.raises(ValueError, match="n_feet=0"):
        _deploy(bundle_dir, tmp_path, MockBody(), estimator=estimator,
                logger_cls=lambda *a, n_feet, **kw: EpisodeLogger(*a, n_feet=0, **kw))
