"""Re-arming without restarting, on simulated time: the operator's damping, a watchdog, an e-stop
and a lost input device, each followed by a re-arm that the safety layer checks (a fresh state,
the trunk upright) before it soft-starts from the measured pose and hands back to the policy;
the operator's stop ends through damping. Tick numbers worked out by hand: 50 Hz, a 0.1 s soft
start (5 ticks), 0.1 s of exit damping, the watchdog's 0.1 s / 0.5 s."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.commands import OperatorInput
from gaitforge.control.deploy import Deployment, LiveStatus, VirtualClock, run_episode
from gaitforge.control.logger import EpisodeLogger, read_log
from gaitforge.control.policy_io import ActionMapper, ObservationBuilder
from gaitforge.control.safety import SafetyConfig, SafetyLayer
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, RobotState

SPEC = load_robot_spec("servo_dog")
DT = 0.02
TILTED = np.array([np.cos(0.5), np.sin(0.5), 0.0, 0.0])  # 1.0 rad about x
UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])
POS, DAMP, OFF = CommandMode.POSITION, CommandMode.DAMPING, CommandMode.OFF


class Body:
    """Servos that reach their target by the next read; reads fail on `dead` ticks, the trunk is
    tilted on `tilted` ticks (tick = the count of reads before this one)."""

    def __init__(self, dead=(), tilted=()):
        self.q = SPEC.default_pose_rad + 0.2
        self.t, self.reads, self.dead, self.tilted = 0.0, 0, set(dead), set(tilted)
        self.modes: list[CommandMode] = []

    def configure(self): ...

    def activate(self): ...

    def deactivate(self): ...

    def read(self) -> RobotState:
        tick, self.reads = self.reads - 1, self.reads + 1  # the start's read is tick -1
        if tick in self.dead:
            raise TimeoutError("no reply")
        return RobotState(time_s=self.t, joint_pos_rad=self.q.copy(),
                          joint_vel_rad_s=np.zeros(12),
                          imu_quat_wxyz=TILTED if tick in self.tilted else UPRIGHT,
                          gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0, 0, 9.81]))

    def write(self, command):
        self.modes.append(command.mode)
        if command.mode is POS:
            self.q = command.position_rad.copy()
        self.t += DT


class Operator:
    """A command source on a script: {tick: requests}, the ticks the device is lost, and a
    command that is the tick's number / 1000 (so the log shows which poll it came from)."""

    can_rearm = True

    def __init__(self, acts: dict[int, tuple], lost=()):
        self.acts, self.lost, self.n = acts, set(lost), -1
        self.current = np.zeros(3)

    def poll(self, policy_time_s):
        self.n += 1
        self.current = np.array([self.n / 1000, 0.0, 0.0])
        return OperatorInput(self.current, self.acts.get(self.n, ()),
                             "pad unplugged" if self.n in self.lost else "")

    def close(self): ...


class ZeroActor:
    def check_body(self, *args): ...

    def act(self, obs):
        return np.zeros(12, np.float32)


def episode(tmp_path, source, body, duration_s=2.0):
    clock = VirtualClock()
    safety = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.1, exit_damping_s=0.1), clock=clock)
    builder = ObservationBuilder(SPEC)
    logger = EpisodeLogger(tmp_path / "ep.gflog", {"robot": "servo_dog"}, n_joints=12,
                           obs_dim=builder.size)
    d = Deployment(body, ZeroActor(), builder, ActionMapper(SPEC), safety, control_dt_s=DT,
                   logger=logger, commands=source, status=LiveStatus())
    result = run_episode(d, duration_s, clock, clock.sleep, max_total_s=duration_s + 3.0)
    logger.close({"outcome": result.outcome})
    return d, result, read_log(tmp_path / "ep.gflog")


def ran(log) -> list[int]:
    """The ticks on which the policy ran."""
    return np.flatnonzero(np.isfinite(log.ticks["action"][:, 0])).tolist()


def kinds(log) -> list[tuple[int, str]]:
    return [(e["tick"], e["kind"]) for e in log.events if e["kind"] != "rate_limit"]


def test_damping_rearm_then_the_operator_ends_the_episode(tmp_path):
    """Soft start ticks 0..5 (done at 0.1 s, tick 5), policy 6..19; space at 20: damping;
    r at 30: soft start 30..35, policy 36..60; q at 60 (that tick's policy still runs; the
    shutdown begins at its end, its event logged with tick 61), damping on ticks 61..64 and off
    at tick 65, 0.1 s after tick 60."""
    body = Body()
    d, result, log = episode(tmp_path, Operator({20: ("damp",), 30: ("rearm",), 60: ("stop",)}),
                             body)
    assert ran(log) == [*range(6, 20), *range(36, 61)]
    assert kinds(log) == [(5, "soft_start_done"), (20, "operator_damping"), (30, "rearm"),
                          (35, "soft_start_done"), (61, "shutdown"), (65, "off")]
    assert body.modes[20:30] == [DAMP] * 10 and body.modes[30] is POS  # soft start at once
    assert body.modes[61:65] == [DAMP] * 4 and body.modes[65:] == [OFF]
    assert (result.outcome, result.rearms, result.policy_ticks) == ("stopped", 1, 39)
    assert result.reason == "the operator ended the episode after 0.76 s of policy"  # when q came
    np.testing.assert_allclose(log.ticks["velocity_command"][:, 0], np.arange(66) / 1000)
    assert log.summary["outcome"] == "stopped"
    assert d.status.rearms == 1 and d.status.phase == "finished"
    assert [k for _, k, _ in d.status.events][-2:] == ["shutdown", "off"]


def test_after_a_watchdog_the_rearm_soft_starts_from_the_measured_pose(tmp_path):
    """Reads fail on ticks 20..29: the last fresh state is tick 19's (t = 0.38 s), damping at
    tick 24 (0.1 s later), fresh again from tick 30; r at 40 soft-starts from where the robot
    is (the last target held through damping), done at tick 45, the policy from tick 46 to the
    end of its 2 s (100 policy ticks: 14 + 86, so up to tick 131). A re-armed fault does not
    decide the outcome."""
    body = Body(dead=range(20, 30))
    d, result, log = episode(tmp_path, Operator({40: ("rearm",)}), body)
    assert ran(log) == [*range(6, 20), *range(46, 132)]
    assert (24, "watchdog_damping") in kinds(log) and (40, "rearm") in kinds(log)
    assert body.modes[24:40] == [DAMP] * 16
    held = log.ticks["command_position_rad"][23]
    np.testing.assert_array_equal(log.ticks["command_position_rad"][40], held)
    assert (result.outcome, result.rearms) == ("completed", 1)
    assert result.safety_counts["watchdog_damping"] == 1


def test_a_tilted_trunk_is_not_rearmed_and_an_upright_one_is(tmp_path):
    """Tilted on ticks 20..39: e-stop at 20 (damping, off after 1 s = tick 70, past these);
    r at 30 is refused (the tilt e-stop again, its damping not restarted), r at 45 upright:
    soft start 45..50, policy from 51. (Tick 20's actor ran: the tilt is seen after it.)"""
    body = Body(tilted=range(20, 40))
    d, result, log = episode(tmp_path, Operator({30: ("rearm",), 45: ("rearm",)}), body, 1.0)
    events = kinds(log)
    assert events[:5] == [(5, "soft_start_done"), (20, "tilt_estop"), (30, "tilt_estop"),
                          (30, "rearm_refused"), (45, "rearm")]
    refused = next(e for e in log.events if e["kind"] == "rearm_refused")
    assert refused["detail"] == "tilt 1.0000 rad > 0.8"
    assert body.modes[20:45] == [DAMP] * 25
    assert ran(log)[:16] == [*range(6, 21), 51] and result.outcome == "completed"


def test_a_lost_gamepad_damps_and_refuses_a_rearm_until_it_is_back(tmp_path):
    body = Body()
    src = Operator({25: ("rearm",), 35: ("rearm",)}, lost=range(20, 30))
    d, result, log = episode(tmp_path, src, body, 1.0)
    assert [k for k in kinds(log) if k[0] < 36] == [
        (5, "soft_start_done"), (20, "input_lost"), (25, "rearm_refused"), (30, "input_back"),
        (35, "rearm")]
    refused = next(e for e in log.events if e["kind"] == "rearm_refused")
    assert refused["detail"] == "the input device is lost (pad unplugged)"
    assert body.modes[20:35] == [DAMP] * 15 and result.outcome == "completed"
    # never re-armed: the episode waits in damping, then its time bound ends it
    _, result, log = episode(tmp_path, Operator({}, lost=range(20, 30)), Body(), 1.0)
    assert result.outcome == "lost_input" and "input_lost" in result.reason


def test_rearm_with_nothing_latched_changes_nothing(tmp_path):
    body = Body()
    _, result, log = episode(tmp_path, Operator({10: ("rearm",)}), body, 0.5)
    assert not any(k == "rearm" for _, k in kinds(log)) and result.rearms == 0
    assert ran(log) == list(range(6, 31)) and result.outcome == "completed"


@pytest.fixture
def layer():
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    s = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.0), clock)
    return s, clock


def state(t, quat=UPRIGHT):
    return RobotState(time_s=t, joint_pos_rad=SPEC.default_pose_rad.copy(),
                      joint_vel_rad_s=np.zeros(12), imu_quat_wxyz=quat,
                      gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0, 0, 9.81]))


def test_safety_rearm_refuses_a_missing_malformed_or_stale_state(layer):
    s, clock = layer
    s.start(state(0.0))
    assert s.filter(state(0.0), None, None).mode is POS and s.policy_active
    clock.now = 0.1
    assert s.filter(None, None, None).mode is DAMP  # no fresh state for 0.1 s
    clock.now = 0.2  # the same sample (time 0) again, 0.2 s after it was fresh: stale
    assert s.rearm(state(0.0)) == "stale state (time 0.000 s; no fresh state lately)"
    assert s.rearm(None) == "no state"
    bad = state(0.2)
    bad.joint_pos_rad[3] = np.nan
    assert s.rearm(bad) == "state.joint_pos_rad: 1 non-finite value(s)"
    assert s.phase == "damping" and s.counts["rearm_refused"] == 3
    assert s.rearm(state(0.2)) == "" and s.phase == "soft_start"
    assert s.rearm(state(0.2)) == ""  # the newest sample, seen just now: fresh
    assert s.rearm(state(0.1)).startswith("stale state (time 0.100 s")  # older than seen
    kinds = [e.kind for e in s.drain_events()]
    assert kinds == ["soft_start_done", "watchdog_damping", "rearm_refused", "rearm_refused",
                     "rearm_refused", "rearm", "rearm", "rearm_refused"]


def test_latch_damps_from_motion_only(layer):
    s, clock = layer
    s.latch("operator_damping", "before start")
    assert s.phase == "idle"
    s.start(state(0.0))
    s.filter(state(0.0), None, None)
    s.latch("input_lost", "pad unplugged")
    assert s.phase == "damping" and s.filter(state(0.0), None, None).mode is DAMP
    s.latch("operator_damping", "again")
    assert s.phase == "damping"
    assert s.counts == {"operator_damping": 2, "soft_start_done": 1, "input_lost": 1}


class ReconnectedBody(Body):
    """A body back after a reconnect that, like HardwareBody, fails its reads and refuses all
    but OFF until its own `rearm()`: reads fail on ticks 20..29, then it waits for rearm()."""

    def __init__(self):
        super().__init__(dead=range(20, 30))
        self.rearm_required, self.rearmed_at = False, None

    def read(self):
        if self.rearm_required:
            self.reads += 1
            raise TimeoutError("link re-established: torque off until rearm()")
        if self.reads - 1 == 29:
            self.rearm_required = True
        return super().read()

    def rearm(self):
        self.rearm_required, self.rearmed_at = False, self.reads - 2  # during tick reads - 2


def test_a_body_waiting_after_a_reconnect_is_rearmed_before_the_safety_layer(tmp_path):
    """Reads fail from tick 20 (the link), and after tick 29 the body waits for its rearm();
    r at 40: body.rearm() first, then a fresh read, then the safety layer's soft start."""
    body = ReconnectedBody()
    _, result, log = episode(tmp_path, Operator({40: ("rearm",)}), body, 1.0)
    assert body.rearmed_at == 40 and (40, "rearm") in kinds(log)
    assert ran(log)[14] == 46 and result.outcome == "completed"
