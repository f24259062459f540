"""Safety layer on a fake clock: every rule fires exactly when it should, against hand numbers.

servo_dog, per leg (hip, thigh, calf): lower (-0.8, -1.2, -2.6), upper (0.8, 2.6, -0.5),
default (0, 0.8, -1.5), kd 0.06. With the default margin 0.05 the allowed box is
(-0.75, -1.15, -2.55) .. (0.75, 2.55, -0.55).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gaitforge.control.policy_io import trunk_tilt_rad
from gaitforge.control.safety import (
    SafetyConfig,
    SafetyEvent,
    SafetyLayer,
    rate_limit_for,
)
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, JointCommand, RobotState

SPEC = load_robot_spec("servo_dog")
N = SPEC.n_joints
DEFAULT = SPEC.default_pose_rad
LO = SPEC.lower_rad + 0.05
HI = SPEC.upper_rad - 0.05
UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])
OBS = np.zeros(45, dtype=np.float32)


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_state(t: float, q=None, quat=UPRIGHT) -> RobotState:
    return RobotState(time_s=t, joint_pos_rad=np.array(DEFAULT if q is None else q, dtype=float),
                      joint_vel_rad_s=np.zeros(N), imu_quat_wxyz=np.array(quat, dtype=float),
                      gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0.0, 0.0, 9.81]))


def tilted(angle_rad: float) -> np.ndarray:
    """Rotation by angle about the body x axis (roll)."""
    return np.array([math.cos(angle_rad / 2), math.sin(angle_rad / 2), 0.0, 0.0])


def proposal(q, **gains) -> JointCommand:
    return JointCommand(position_rad=np.array(q, dtype=float), **gains)


def armed(config: SafetyConfig | None = None):
    """A layer in the policy phase at t = 0, standing at the default pose (one tick of ramp)."""
    config = config or SafetyConfig(soft_start_s=0.0)
    clock = FakeClock(0.0)
    layer = SafetyLayer(SPEC, config, clock)
    layer.start(make_state(0.0))
    cmd = layer.filter(make_state(0.0), OBS, None)
    assert cmd.mode is CommandMode.POSITION and layer.policy_active
    layer.drain_events()
    return layer, clock


def tick(layer, clock, t, state="fresh", proposed=None, obs=OBS):
    clock.now = t
    if state == "fresh":
        state = make_state(t)
    return layer.filter(state, obs, proposed)


# Config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("limit_margin_rad", -0.01), ("max_step_rad", 0.0), ("watchdog_damping_s", -0.1),
    ("watchdog_off_s", 0.1), ("watchdog_off_s", 0.05), ("max_tilt_rad", 4.0),
    ("estop_off_after_s", -1.0), ("soft_start_s", -2.0), ("exit_damping_s", -0.5),
    ("damping_kd_scale", 0.0), ("soft_start_s", math.nan), ("max_step_rad", math.inf),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SafetyConfig(**{field: value})


def test_margin_that_leaves_no_range_is_rejected():
    # hip range 1.6 rad: a 0.8 margin leaves [0, 0]
    with pytest.raises(ValueError, match="limit_margin_rad.*FR_hip"):
        SafetyLayer(SPEC, SafetyConfig(limit_margin_rad=0.8), FakeClock())


# Before start, soft start ----------------------------------------------------------------------
def test_off_before_start():
    layer = SafetyLayer(SPEC, clock=FakeClock())
    cmd = layer.filter(make_state(0.0), OBS, proposal(DEFAULT + 0.3))
    assert cmd.mode is CommandMode.OFF and layer.phase == "idle" and not layer.policy_active
    np.testing.assert_array_equal(cmd.position_rad, DEFAULT)


def test_soft_start_ramps_linearly_and_ignores_the_policy():
    """From measured = default + 0.3 (all joints) to default over 2 s, ticks of 0.02 s:
    0.003 rad per tick, well under max_step_rad. At t = 1 s the target is default + 0.15."""
    clock = FakeClock(0.0)
    layer = SafetyLayer(SPEC, SafetyConfig(), clock)
    measured = DEFAULT + 0.3
    layer.start(make_state(0.0, measured))
    assert layer.phase == "soft_start" and not layer.policy_active
    wild = proposal(np.full(N, 5.0))
    for k in range(1, 100):  # t = 0.02 .. 1.98
        cmd = tick(layer, clock, 0.02 * k, make_state(0.02 * k, measured), wild)
        assert cmd.mode is CommandMode.POSITION and not layer.policy_active
        np.testing.assert_allclose(cmd.position_rad, measured + (DEFAULT - measured) * k / 100,
                                   atol=1e-12)
        if k == 50:
            np.testing.assert_allclose(cmd.position_rad, DEFAULT + 0.15, atol=1e-12)
            np.testing.assert_allclose(cmd.kp_nm_per_rad, SPEC.kp)
    cmd = tick(layer, clock, 2.0, make_state(2.0, measured), wild)
    np.testing.assert_array_equal(cmd.position_rad, DEFAULT)
    assert layer.policy_active and layer.phase == "policy"
    events = layer.drain_events()
    assert [e.kind for e in events] == ["soft_start_done"] and events[0].time_s == 2.0
    assert layer.counts == {"soft_start_done": 1}
    # the policy now drives: a step of 0.05 on every joint goes straight through
    cmd = tick(layer, clock, 2.02, proposed=proposal(DEFAULT + 0.05))
    np.testing.assert_allclose(cmd.position_rad, DEFAULT + 0.05)


def test_short_soft_start_is_rate_limited():
    """FR_hip measured at 0.7, soft start 0.1 s at 0.02 s ticks: the ramp wants 0.14 rad a tick,
    the rate limit allows 0.1: 0.6, 0.5, 0.4, 0.3, 0.2 (ramp time over), 0.1, 0.0 -> policy."""
    clock = FakeClock(0.0)
    layer = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.1), clock)
    measured = DEFAULT.copy()
    measured[0] = 0.7
    layer.start(make_state(0.0, measured))
    hips = []
    for k in range(1, 8):
        hips.append(tick(layer, clock, 0.02 * k).position_rad[0])
        assert layer.policy_active == (k == 7)
    np.testing.assert_allclose(hips, [0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], atol=1e-12)
    assert layer.counts["rate_limit"] == 6
    assert all(e.detail == "FR_hip" for e in layer.drain_events() if e.kind == "rate_limit")
    assert layer.policy_ticks_rate_limited == 0  # soft start is not the policy


# Clamp and rate limit --------------------------------------------------------------------------
def test_clamp_to_limits_minus_margin():
    layer, clock = armed(SafetyConfig(soft_start_s=0.0, max_step_rad=10.0))
    q = DEFAULT.copy()
    q[0], q[2], q[4] = 0.78, -2.59, 3.0  # FR_hip > 0.75, FR_calf < -2.55, FL_thigh > 2.55
    q[3] = 0.74  # FL_hip inside: untouched
    cmd = tick(layer, clock, 0.02, proposed=proposal(q))
    expected = q.copy()
    expected[0], expected[2], expected[4] = 0.75, -2.55, 2.55
    np.testing.assert_allclose(cmd.position_rad, expected, atol=1e-15)
    assert layer.drain_events() == [SafetyEvent(0.02, "clamp", "FR_hip, FR_calf, FL_thigh")]
    # every joint out of range: still one event for the tick, naming all twelve
    tick(layer, clock, 0.04, proposed=proposal(np.full(N, 100.0)))
    (event,) = layer.drain_events()
    assert event.kind == "clamp" and event.detail == ", ".join(SPEC.joint_names)
    assert layer.counts == {"soft_start_done": 1, "clamp": 2}


def test_rate_limit_against_last_target_sent():
    layer, clock = armed()
    q = DEFAULT.copy()
    q[0], q[1] = 0.25, 0.75  # FR_hip +0.25 (limited to 0.1 a tick), FR_thigh -0.05 (passes)
    hips = [tick(layer, clock, 0.02 * k, proposed=proposal(q)).position_rad[0]
            for k in range(1, 5)]
    np.testing.assert_allclose(hips, [0.1, 0.2, 0.25, 0.25], atol=1e-12)
    events = layer.drain_events()
    assert [(e.kind, e.detail) for e in events] == [("rate_limit", "FR_hip")] * 2
    assert layer.policy_ticks_rate_limited == 2
    # clamp and rate limit together: 2.0 -> 0.75 (clamp) -> 0.35 (0.25 + 0.1)
    q[0] = 2.0
    cmd = tick(layer, clock, 0.1, proposed=proposal(q))
    assert cmd.position_rad[0] == pytest.approx(0.35)
    assert [e.kind for e in layer.drain_events()] == ["clamp", "rate_limit"]
    # no proposal this tick: hold the last target
    np.testing.assert_array_equal(tick(layer, clock, 0.12).position_rad, cmd.position_rad)


# Watchdog --------------------------------------------------------------------------------------
def test_watchdog_damping_then_off_and_latched():
    layer, clock = armed()
    assert tick(layer, clock, 0.099, None, proposal(DEFAULT)).mode is CommandMode.POSITION
    cmd = tick(layer, clock, 0.1, None, proposal(DEFAULT))
    assert cmd.mode is CommandMode.DAMPING and layer.phase == "damping"
    np.testing.assert_array_equal(cmd.kp_nm_per_rad, np.zeros(N))
    np.testing.assert_allclose(cmd.kd_nm_s_per_rad, np.full(N, 0.06))
    np.testing.assert_array_equal(cmd.position_rad, DEFAULT)
    assert tick(layer, clock, 0.499, None).mode is CommandMode.DAMPING
    assert tick(layer, clock, 0.5, None).mode is CommandMode.OFF and layer.phase == "off"
    assert [e.kind for e in layer.drain_events()] == ["watchdog_damping", "watchdog_off"]
    # fresh states again: still off until rearm
    assert tick(layer, clock, 0.6).mode is CommandMode.OFF and not layer.policy_active
    layer.rearm(make_state(0.6))
    assert layer.phase == "soft_start"


def test_watchdog_damping_stays_latched_while_fresh_states_return():
    layer, clock = armed()
    assert tick(layer, clock, 0.1, None).mode is CommandMode.DAMPING
    for t in (0.15, 0.3, 0.45, 0.6, 0.75):
        assert tick(layer, clock, t, proposed=proposal(DEFAULT)).mode is CommandMode.DAMPING
    assert layer.counts == {"soft_start_done": 1, "watchdog_damping": 1}


def test_stale_state_is_not_fresh_and_float_clock_deadlines():
    layer, clock = armed()
    # the body keeps returning the same sample (time_s 0): not fresh
    assert tick(layer, clock, 0.1, make_state(0.0)).mode is CommandMode.DAMPING
    # 0.7 - 0.6 is 0.0999... in floats: still exactly the 0.1 s deadline
    layer, clock = armed()
    tick(layer, clock, 0.6)
    assert tick(layer, clock, 0.7, None).mode is CommandMode.DAMPING


# Non-finite inputs -----------------------------------------------------------------------------
def _nan_pos_state(t):
    s = make_state(t)
    s.joint_pos_rad[4] = math.nan
    return s


def _inf_gyro_state(t):
    s = make_state(t)
    s.gyro_rad_s[1] = math.inf
    return s


NAN_POS = DEFAULT.copy()
NAN_POS[2] = math.nan


@pytest.mark.parametrize(("state_fn", "obs", "proposed"), [
    (_nan_pos_state, OBS, proposal(DEFAULT)),
    (_inf_gyro_state, OBS, proposal(DEFAULT)),
    (make_state, np.full(45, math.nan, dtype=np.float32), proposal(DEFAULT)),
    (make_state, OBS, proposal(NAN_POS)),
    (make_state, OBS, proposal(DEFAULT, kp_nm_per_rad=np.full(N, math.nan))),
    (make_state, OBS, proposal(DEFAULT, torque_ff_nm=np.full(N, -math.inf))),
], ids=["state_pos", "state_gyro", "observation", "proposed_pos", "proposed_kp", "proposed_ff"])
def test_non_finite_gives_latched_damping_until_rearm(state_fn, obs, proposed):
    layer, clock = armed()
    tick(layer, clock, 0.02, proposed=proposal(DEFAULT + 0.05))
    cmd = tick(layer, clock, 0.04, state_fn(0.04), proposed, obs)
    assert cmd.mode is CommandMode.DAMPING and layer.phase == "damping"
    assert np.all(np.isfinite(cmd.position_rad))
    np.testing.assert_allclose(cmd.position_rad, DEFAULT + 0.05)  # the last target sent
    (event,) = layer.drain_events()
    assert event.kind == "non_finite" and event.time_s == 0.04
    # clean inputs do not clear it
    for t in (0.06, 0.08, 0.2):
        assert tick(layer, clock, t, proposed=proposal(DEFAULT)).mode is CommandMode.DAMPING
    layer.rearm(make_state(0.2))
    assert layer.phase == "soft_start" and layer.counts["rearm"] == 1
    assert tick(layer, clock, 0.22).mode is CommandMode.POSITION
    assert layer.policy_active  # soft_start_s = 0: one tick from the default pose


def test_wrong_shape_is_a_fault_too():
    layer, clock = armed()
    assert tick(layer, clock, 0.02, proposed=proposal(DEFAULT[:6])).mode is CommandMode.DAMPING
    assert layer.drain_events()[0].kind == "invalid_input"


# Tilt e-stop -----------------------------------------------------------------------------------
def test_trunk_tilt_numbers():
    assert trunk_tilt_rad(UPRIGHT) == 0.0
    assert trunk_tilt_rad(tilted(0.5)) == pytest.approx(0.5, abs=1e-12)
    assert trunk_tilt_rad(2.0 * tilted(0.5)) == pytest.approx(0.5, abs=1e-12)  # not unit
    pitch = np.array([math.cos(0.3), 0.0, math.sin(0.3), 0.0])  # 0.6 rad about y
    assert trunk_tilt_rad(pitch) == pytest.approx(0.6, abs=1e-12)
    assert trunk_tilt_rad(np.array([0.0, 0.0, 0.0, 1.0])) == 0.0  # 180 deg yaw: upright
    assert trunk_tilt_rad(np.array([0.0, 1.0, 0.0, 0.0])) == pytest.approx(math.pi)


def test_tilt_estop_latched_then_off():
    layer, clock = armed()
    assert tick(layer, clock, 0.02, make_state(0.02, quat=tilted(0.8 - 1e-6))).mode \
        is CommandMode.POSITION
    cmd = tick(layer, clock, 1.0, make_state(1.0, quat=tilted(-(0.8 + 1e-6))))
    assert cmd.mode is CommandMode.DAMPING and layer.phase == "estop"
    assert [e.kind for e in layer.drain_events()] == ["tilt_estop"]
    # upright again, fresh states every 0.05 s: still damping until 1.0 s after the e-stop
    for t in np.arange(1.05, 1.99, 0.05):
        assert tick(layer, clock, t, proposed=proposal(DEFAULT)).mode is CommandMode.DAMPING
    assert tick(layer, clock, 1.999).mode is CommandMode.DAMPING
    assert tick(layer, clock, 2.0).mode is CommandMode.OFF
    assert tick(layer, clock, 5.0).mode is CommandMode.OFF and layer.phase == "estop"
    assert [e.kind for e in layer.drain_events()] == ["off"]
    # rearm while still tilted: e-stop again at once; upright: soft start
    layer.rearm(make_state(5.0, quat=tilted(1.0)))
    assert layer.phase == "estop" and layer.counts["tilt_estop"] == 2
    layer.rearm(make_state(5.0))
    assert layer.phase == "soft_start"


# Shutdown --------------------------------------------------------------------------------------
def test_shutdown_damping_then_off_then_finished():
    layer, clock = armed()
    clock.now = 1.0
    layer.begin_shutdown()
    assert layer.phase == "shutdown" and not layer.policy_active and not layer.finished
    assert tick(layer, clock, 1.0, proposed=proposal(DEFAULT)).mode is CommandMode.DAMPING
    assert tick(layer, clock, 1.499, None).mode is CommandMode.DAMPING
    assert tick(layer, clock, 1.5).mode is CommandMode.OFF and layer.finished
    assert tick(layer, clock, 9.0).mode is CommandMode.OFF
    assert [e.kind for e in layer.drain_events()] == ["shutdown", "off"]
    with pytest.raises(RuntimeError):
        layer.rearm(make_state(9.0))


def test_shutdown_when_already_off_finishes_at_once():
    layer = SafetyLayer(SPEC, clock=FakeClock())
    layer.begin_shutdown()
    assert layer.finished


# Property: whatever comes in, what goes out is safe --------------------------------------------
def joint_vectors(elements):
    return st.lists(elements, min_size=N, max_size=N).map(np.array)


clean = joint_vectors(st.floats(-4.0, 4.0))
push = st.sampled_from([-4.0, 4.0]).map(lambda v: np.full(N, v))  # drives joints to a limit
dirty = joint_vectors(st.one_of(st.floats(-4.0, 4.0),
                                st.sampled_from([math.nan, math.inf, -math.inf, 1e300])))
steps = st.lists(st.tuples(
    st.floats(0.001, 0.15),  # dt
    st.sampled_from(["fresh"] * 12 + ["none", "stale", "nan", "tilted"]),
    st.one_of(st.none(), clean, push, push, dirty),  # proposed position
    st.one_of(st.none(), st.none(), st.none(), clean, dirty),  # proposed kp
    st.integers(0, 3),  # 0: rearm before this tick (only with a clean state)
), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, soft_start_s=st.sampled_from([0.0, 0.05, 0.3]),
       max_step_rad=st.sampled_from([0.02, 0.1, 5.0]),
       offset=st.lists(st.floats(-1.0, 1.0), min_size=N, max_size=N))
def test_property_commands_always_safe(steps, soft_start_s, max_step_rad, offset):
    config = replace(SafetyConfig(), soft_start_s=soft_start_s, max_step_rad=max_step_rad)
    clock = FakeClock(0.0)
    layer = SafetyLayer(SPEC, config, clock)
    measured = DEFAULT + np.array(offset)  # may lie outside limits-minus-margin
    layer.start(make_state(0.0, measured))
    previous = np.clip(measured, LO, HI)  # reference of the first POSITION target
    t, sample_t = 0.0, 0.0
    for dt, kind, q, kp, dice in steps:
        t += dt
        clock.now = t
        if kind != "stale":
            sample_t = t
        if kind == "none":
            state = None
        elif kind == "nan":
            state = _nan_pos_state(t)
        else:
            state = make_state(sample_t, measured, quat=tilted(1.2 if kind == "tilted" else 0.0))
        if dice == 0 and kind == "fresh":
            layer.rearm(state)
            previous = np.clip(measured, LO, HI)
        proposed = None if q is None else proposal(q, kp_nm_per_rad=kp)
        cmd = layer.filter(state, OBS, proposed)
        assert np.all(np.isfinite(cmd.position_rad))
        assert np.all(cmd.position_rad >= LO) and np.all(cmd.position_rad <= HI)
        for gain in (cmd.kp_nm_per_rad, cmd.kd_nm_s_per_rad, cmd.torque_ff_nm):
            assert gain is None or np.all(np.isfinite(gain))
        if cmd.mode is CommandMode.POSITION:
            assert np.all(np.abs(cmd.position_rad - previous) <= config.max_step_rad + 1e-12)
            previous = cmd.position_rad
        elif cmd.mode is CommandMode.DAMPING:
            np.testing.assert_array_equal(cmd.kp_nm_per_rad, np.zeros(N))
    assert sum(layer.counts.values()) == len(layer.drain_events())  # every event counted once


def test_rate_limit_for_follows_the_servo_speed():
    # servo_dog: 6 rad/s; at 50 Hz twice that is 2 * 6 * 0.02 = 0.24 rad per tick
    assert rate_limit_for(SPEC, 0.02) == pytest.approx(0.24)
    assert rate_limit_for(SPEC, 0.005, factor=1.0) == pytest.approx(0.03)
