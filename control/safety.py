"""Safety layer: the last word between the policy and the body, every control tick.

The loop reads a state, runs the actor only while `policy_active`, and writes whatever
`SafetyLayer.filter(state, observation, proposed)` returns. The layer is a small state machine
on an injected clock (seconds); every fault latches until `rearm(state)`:

    idle --start(state)--> soft_start --ramp reached the default pose--> policy
    soft_start | policy   --NaN/Inf or malformed input-----------------> damping
    soft_start | policy   --no fresh state for watchdog_damping_s------> damping
    soft_start | policy | damping --no fresh state for watchdog_off_s--> off
    soft_start | policy | damping --trunk tilt > max_tilt_rad----------> estop (damping, then
                                                     OFF after estop_off_after_s)
    soft_start | policy   --latch(kind): the operator's damping, a lost input device--> damping
    latched phases --rearm(state), refused unless the state is valid and fresh and the trunk
                     is within max_tilt_rad--> soft_start from the measured pose
    any --begin_shutdown()--> shutdown (damping for exit_damping_s) --> finished (OFF)

A state is fresh for `rearm` if it is no older than the newest state seen, and the layer has
seen a fresh state within watchdog_damping_s (or it is newer than every state seen). A refused
re-arm changes nothing but the events (`rearm_refused`, and `tilt_estop` for a trunk still
tilted: an e-stop again, its damping not restarted).

Every POSITION target is first clamped to the joint limits minus `limit_margin_rad`, then moved
at most `max_step_rad` from the previous POSITION target (after start/rearm: from the clamped
measured pose). The previous target lies inside the box, so the result satisfies both. Events go
to a queue the logger drains each tick, at most one per kind per tick, and are counted per kind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from gaitforge.control.policy_io import limit_targets, trunk_tilt_rad
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, RobotState

# Slack on every deadline, so that a float clock at 0.7 counts as 0.1 s after 0.6.
_EPS_S = 1e-9
_MOTION = ("soft_start", "policy")
_TILT_CHECKED = ("soft_start", "policy", "damping")


@dataclass(frozen=True)
class SafetyEvent:
    time_s: float  # injected clock
    kind: str  # "clamp", "rate_limit", "non_finite", "invalid_input", "watchdog_damping", ...
    detail: str = ""


@dataclass(frozen=True)
class SafetyConfig:
    limit_margin_rad: float = 0.05
    max_step_rad: float = 0.1  # per control tick
    watchdog_damping_s: float = 0.1
    watchdog_off_s: float = 0.5
    max_tilt_rad: float = 0.8
    estop_off_after_s: float = 1.0
    soft_start_s: float = 2.0
    exit_damping_s: float = 0.5
    damping_kd_scale: float = 1.0  # damping kd = spec kd * scale (kp = 0)

    def __post_init__(self):
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"{f.name} must be finite, got {getattr(self, f.name)}")
        for name in ("limit_margin_rad", "estop_off_after_s", "soft_start_s", "exit_damping_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_step_rad", "watchdog_damping_s", "max_tilt_rad", "damping_kd_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.watchdog_off_s > self.watchdog_damping_s:
            raise ValueError(f"watchdog_off_s ({self.watchdog_off_s}) must be > "
                             f"watchdog_damping_s ({self.watchdog_damping_s})")
        if self.max_tilt_rad > math.pi:
            raise ValueError(f"max_tilt_rad must be <= pi, got {self.max_tilt_rad}")


def rate_limit_for(spec: RobotSpec, control_dt_s: float, factor: float = 2.0) -> float:
    """A per-tick target step that lets every joint move at `factor` x its velocity limit:
    loose enough never to reshape a gait the servos can follow, tight enough to stop a jump."""
    return float(factor * np.max(spec.velocity_limit_rad_s) * control_dt_s)


def _array_problem(name: str, value, shape: tuple[int, ...] | None) -> tuple[str, str] | None:
    """(kind, detail) if `value` is not a finite float array of `shape` (None: any), else None."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return "invalid_input", f"{name} is not numeric"
    if shape is not None and arr.shape != shape:
        return "invalid_input", f"{name} has shape {arr.shape}, expected {shape}"
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    return ("non_finite", f"{name}: {bad} non-finite value(s)") if bad else None


def _state_problem(state: RobotState, n: int) -> tuple[str, str] | None:
    shapes = {"time_s": (), "joint_pos_rad": (n,), "joint_vel_rad_s": (n,), "imu_quat_wxyz": (4,),
              "gyro_rad_s": (3,), "accel_m_s2": (3,), "joint_torque_nm": (n,)}
    for attr, shape in shapes.items():
        value = getattr(state, attr)
        if value is None and attr == "joint_torque_nm":  # not measured on every body
            continue
        if problem := _array_problem(f"state.{attr}", value, shape):
            return problem
    if not np.linalg.norm(state.imu_quat_wxyz) > 1e-9:
        return "invalid_input", "state.imu_quat_wxyz has zero norm"
    return None


def _command_problem(cmd: JointCommand | None, n: int) -> tuple[str, str] | None:
    if cmd is None:
        return None
    for attr in ("position_rad", "kp_nm_per_rad", "kd_nm_s_per_rad", "torque_ff_nm"):
        value = getattr(cmd, attr)
        if (value is not None or attr == "position_rad") and (
                problem := _array_problem(f"proposed.{attr}", value, (n,))):
            return problem
    return None


def _rearm_problem(state: RobotState | None, n: int, newest_s: float, recent: bool) -> str:
    """Why `state` cannot re-arm ("" if it can): missing, malformed or non-finite, or stale."""
    if state is None:
        return "no state"
    if problem := _state_problem(state, n):
        return problem[1]
    if state.time_s < newest_s or (state.time_s == newest_s and not recent):
        return f"stale state (time {float(state.time_s):.3f} s; no fresh state lately)"
    return ""


def _position(spec: RobotSpec, q, kp=None, kd=None, tau=None) -> JointCommand:
    return JointCommand(position_rad=q, mode=CommandMode.POSITION,
                        kp_nm_per_rad=np.array(spec.kp) if kp is None else kp,
                        kd_nm_s_per_rad=np.array(spec.kd) if kd is None else kd,
                        torque_ff_nm=tau)


class SafetyLayer:
    """Filters every proposed command; see the module docstring for the phases."""

    def __init__(self, spec: RobotSpec, config: SafetyConfig = SafetyConfig(),
                 clock: Callable[[], float] = time.monotonic):
        self.spec, self.config, self._clock = spec, config, clock
        self._lo = spec.lower_rad + config.limit_margin_rad
        self._hi = spec.upper_rad - config.limit_margin_rad
        narrow = [name for name, lo, hi in zip(spec.joint_names, self._lo, self._hi, strict=True)
                  if not lo < hi]
        if narrow:
            raise ValueError(f"limit_margin_rad {config.limit_margin_rad} leaves no range "
                             f"for joints: {', '.join(narrow)}")
        self._names = np.array(spec.joint_names)
        self._damping_kd = spec.kd * config.damping_kd_scale
        self._phase = "idle"
        self._since = 0.0  # clock time the current phase began
        self._last_fresh = 0.0  # clock time of the last fresh state
        self._last_time_s = -math.inf  # state.time_s of the last fresh state
        self._target: np.ndarray | None = None  # last POSITION target (rate-limit reference)
        self._ramp_from: np.ndarray | None = None
        self._estop_off = False
        self._events: list[SafetyEvent] = []
        self.counts: dict[str, int] = {}
        self.policy_ticks_rate_limited = 0  # policy commands the rate limit held back

    # Public state ---------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self._phase

    @property
    def policy_active(self) -> bool:
        return self._phase == "policy"

    @property
    def finished(self) -> bool:
        return self._phase == "finished"

    def drain_events(self) -> list[SafetyEvent]:
        events, self._events = self._events, []
        return events

    # Lifecycle ------------------------------------------------------------------------------
    def start(self, state: RobotState) -> None:
        """Begin the soft start from the measured pose."""
        if self._phase != "idle":
            raise RuntimeError(f"start() called in phase '{self._phase}'; use rearm()")
        self._arm(state)

    def rearm(self, state: RobotState | None) -> str:
        """Clear a latched fault, watchdog or e-stop and soft-start again from `state`, if it
        is valid, fresh and upright; returns "" then, else the reason it was refused."""
        if self._phase in ("idle", "shutdown", "finished"):
            raise RuntimeError(f"rearm() called in phase '{self._phase}'")
        now = self._clock()
        why = _rearm_problem(state, self.spec.n_joints, self._last_time_s,
                             now - self._last_fresh < self.config.watchdog_damping_s - _EPS_S)
        if not why and (tilt := trunk_tilt_rad(state.imu_quat_wxyz)) > self.config.max_tilt_rad:
            why = f"tilt {tilt:.4f} rad > {self.config.max_tilt_rad}"
            self._record("tilt_estop", why, now)
            if self._phase != "estop":
                self._enter("estop", now)
        if why:
            self._record("rearm_refused", why, now)
            return why
        self._record("rearm", f"from phase {self._phase}", now)
        self._arm(state)
        return ""

    def latch(self, kind: str, detail: str) -> None:
        """Latched damping from soft start or policy, recorded as `kind` (the operator's
        damping, a lost input device); in any other phase only the event."""
        now = self._clock()
        self._record(kind, detail, now)
        if self._phase in _MOTION:
            self._enter("damping", now)

    def begin_shutdown(self) -> None:
        """Damping for exit_damping_s, then OFF and `finished` (at once if already off)."""
        if self._phase in ("shutdown", "finished"):
            return
        now = self._clock()
        self._record("shutdown", f"from phase {self._phase}", now)
        if self._phase in ("idle", "off") or (self._phase == "estop" and self._estop_off):
            self._finish("already off", now)
        else:
            self._enter("shutdown", now)

    # The tick ------------------------------------------------------------------------------
    def filter(self, state: RobotState | None, observation: np.ndarray | None,
               proposed: JointCommand | None) -> JointCommand:
        """The one command to write this tick: finite, inside limits minus margin, and (for
        POSITION) within max_step_rad of the previous POSITION target."""
        now, cfg, n = self._clock(), self.config, self.spec.n_joints
        if self._phase in ("idle", "finished"):
            return self._safe(CommandMode.OFF)
        if self._phase == "shutdown":
            if now - self._since >= cfg.exit_damping_s - _EPS_S:
                self._finish("shutdown complete", now)
                return self._safe(CommandMode.OFF)
            return self._safe(CommandMode.DAMPING)

        state_problem = None if state is None else _state_problem(state, n)
        state_ok = state is not None and state_problem is None
        if state_ok and state.time_s > self._last_time_s:
            self._last_fresh, self._last_time_s = now, float(state.time_s)
        if self._phase in _MOTION:
            problem = state_problem
            if problem is None and observation is not None:
                problem = _array_problem("observation", observation, None)
            if problem is None and self._phase == "policy":
                problem = _command_problem(proposed, n)
            if problem:
                self._record(*problem, now)
                self._enter("damping", now)
        if state_ok and self._phase in _TILT_CHECKED:
            self._check_tilt(state, now)
        age = now - self._last_fresh
        if age >= cfg.watchdog_off_s - _EPS_S and self._phase in _TILT_CHECKED:
            self._record("watchdog_off", f"no fresh state for {age:.3f} s", now)
            self._enter("off", now)
        elif age >= cfg.watchdog_damping_s - _EPS_S and self._phase in _MOTION:
            self._record("watchdog_damping", f"no fresh state for {age:.3f} s", now)
            self._enter("damping", now)

        if self._phase == "estop":
            if not self._estop_off and (now - self._since >= cfg.estop_off_after_s - _EPS_S
                                        or age >= cfg.watchdog_off_s - _EPS_S):
                self._estop_off = True
                self._record("off", "e-stop: torque off", now)
            return self._safe(CommandMode.OFF if self._estop_off else CommandMode.DAMPING)
        if self._phase == "off":
            return self._safe(CommandMode.OFF)
        if self._phase == "damping":
            return self._safe(CommandMode.DAMPING)
        if self._phase == "soft_start":
            return self._soft_start_step(now)
        return self._policy_step(proposed, now)

    # Helpers -------------------------------------------------------------------------------
    def _arm(self, state: RobotState) -> None:
        now = self._clock()
        self._last_fresh, self._last_time_s = now, -math.inf
        problem = _state_problem(state, self.spec.n_joints)
        if problem is None:
            self._last_time_s = float(state.time_s)
            self._target = np.clip(state.joint_pos_rad, self._lo, self._hi)
        elif self._target is None:
            self._target = np.clip(self.spec.default_pose_rad, self._lo, self._hi)
        self._ramp_from = self._target.copy()
        self._enter("soft_start", now)
        if problem:
            self._record(*problem, now)
            self._enter("damping", now)
        else:
            self._check_tilt(state, now)

    def _check_tilt(self, state: RobotState, now: float) -> None:
        tilt = trunk_tilt_rad(state.imu_quat_wxyz)
        if tilt > self.config.max_tilt_rad:
            self._record("tilt_estop", f"tilt {tilt:.4f} rad > {self.config.max_tilt_rad}", now)
            self._enter("estop", now)

    def _soft_start_step(self, now: float) -> JointCommand:
        end = np.clip(self.spec.default_pose_rad, self._lo, self._hi)
        duration = self.config.soft_start_s
        done = now - self._since >= duration - _EPS_S
        frac = 1.0 if done else (now - self._since) / duration
        sent = self._rate_limited(self._ramp_from + (end - self._ramp_from) * frac, now)
        if done and np.array_equal(sent, end):
            self._record("soft_start_done", f"after {now - self._since:.3f} s", now)
            self._enter("policy", now)
        return _position(self.spec, sent)

    def _policy_step(self, proposed: JointCommand | None, now: float) -> JointCommand:
        if proposed is None:  # policy not run this tick: hold the last target
            return _position(self.spec, self._target.copy())
        if proposed.mode is CommandMode.DAMPING:
            return self._safe(CommandMode.DAMPING)
        if proposed.mode is CommandMode.OFF:
            return self._safe(CommandMode.OFF)
        wanted = np.asarray(proposed.position_rad, dtype=np.float64)
        sent, clamped, limited = limit_targets(wanted, self._target, self._lo, self._hi,
                                               self.config.max_step_rad)
        if clamped.any():
            self._record("clamp", ", ".join(self._names[clamped]), now)
        if limited.any():
            self._record("rate_limit", ", ".join(self._names[limited]), now)
            self.policy_ticks_rate_limited += 1
        self._target = sent
        sent = sent.copy()
        kp, kd, tau = proposed.kp_nm_per_rad, proposed.kd_nm_s_per_rad, proposed.torque_ff_nm
        limit = self.spec.torque_limit_nm
        return _position(
            self.spec, sent,
            None if kp is None else np.maximum(np.asarray(kp, dtype=np.float64), 0.0),
            None if kd is None else np.maximum(np.asarray(kd, dtype=np.float64), 0.0),
            None if tau is None else np.clip(np.asarray(tau, dtype=np.float64), -limit, limit))

    def _rate_limited(self, target: np.ndarray, now: float) -> np.ndarray:
        sent, _, limited = limit_targets(target, self._target, self._lo, self._hi,
                                         self.config.max_step_rad)
        if limited.any():
            self._record("rate_limit", ", ".join(self._names[limited]), now)
        self._target = sent
        return sent.copy()

    def _safe(self, mode: CommandMode) -> JointCommand:
        """DAMPING (the damping kd) or OFF (kd 0) at the last target sent (before start: the
        default pose), kp = 0."""
        n = self.spec.n_joints
        q = np.clip(self.spec.default_pose_rad, self._lo, self._hi) if self._target is None \
            else self._target.copy()
        kd = self._damping_kd.copy() if mode is CommandMode.DAMPING else np.zeros(n)
        return JointCommand(position_rad=q, mode=mode, kp_nm_per_rad=np.zeros(n),
                            kd_nm_s_per_rad=kd)

    def _enter(self, phase: str, now: float) -> None:
        self._phase, self._since, self._estop_off = phase, now, False

    def _finish(self, why: str, now: float) -> None:
        self._record("off", why, now)
        self._enter("finished", now)

    def _record(self, kind: str, detail: str, now: float) -> None:
        self._events.append(SafetyEvent(now, kind, detail))
        self.counts[kind] = self.counts.get(kind, 0) + 1
