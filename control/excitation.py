"""Excitation: joint motions that make a robot's dynamics measurable, for system identification.

The routine is precomputed as one target per joint per control tick, around the default pose:

    chirps       the first `chirp_fraction` of the time, each joint sweeps a sine from
                 `f_low_hz` to `f_high_hz` (exponential sweep), joint j offset by a fraction of
                 a cycle and its frequencies scaled by 1 + 0.05 j, so no two joints move in
                 lock-step
    steps        then each joint holds levels +-amplitude/2, `step_hold_s` each, in a seeded
                 order; the moves between levels are ramps at 90 % of the rate limit
    ramps        the whole routine is faded in over the first `ramp_s` and out over the last
                 (smoothstep), so it starts and ends at the default pose

Every target stays inside the joint limits minus the safety margin, and every per-tick change
stays within 90 % of the safety layer's rate limit (the amplitude is cut until it does), so
the safety layer never has to reshape it: what the log records is what the routine asked for.

It runs through the deploy runtime as the policy would, as an "actor" (`ExcitationActor`):
`act(observation)` returns the next tick's target offset in [-1, 1] units of the amplitude,
and an `ActionMapper` with `scale_rad` = the amplitude turns it into joint targets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from gaitforge.robots.spec import RobotSpec

from .policy_io import ActionConfig, ActionMapper


@dataclass(frozen=True)
class ExcitationConfig:
    duration_s: float = 30.0  # ramps included
    amplitude_rad: float = 0.4  # at most; cut to fit the limits and the rate limit
    f_low_hz: float = 0.3
    f_high_hz: float = 3.0
    chirp_fraction: float = 0.6  # of the time between the ramps; the rest is steps
    step_hold_s: float = 0.6
    ramp_s: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if not (self.duration_s > 2 * self.ramp_s + 1.0 and self.ramp_s >= 0):
            raise ValueError(f"duration_s ({self.duration_s}) must exceed two ramps "
                             f"({self.ramp_s} s each) by at least 1 s")
        if not 0 < self.f_low_hz < self.f_high_hz:
            raise ValueError("need 0 < f_low_hz < f_high_hz")
        if not (self.amplitude_rad > 0 and 0 < self.chirp_fraction <= 1
                and self.step_hold_s > 0):
            raise ValueError("amplitude_rad, chirp_fraction and step_hold_s must be > 0 "
                             "(chirp_fraction <= 1)")


def excitation_targets(spec: RobotSpec, config: ExcitationConfig, control_dt_s: float,
                       *, limit_margin_rad: float, max_step_rad: float
                       ) -> tuple[np.ndarray, float]:
    """((T, n) joint targets in rad, the amplitude used). See the module docstring."""
    c = config
    n_ticks = int(round(c.duration_s / control_dt_s))
    t = np.arange(n_ticks) * control_dt_s
    lo, hi = spec.lower_rad + limit_margin_rad, spec.upper_rad - limit_margin_rad
    room = np.minimum(spec.default_pose_rad - lo, hi - spec.default_pose_rad)
    speed_cap = 0.9 * max_step_rad / control_dt_s  # rad/s the safety layer lets through
    # a sine of amplitude A at f moves at most 2 pi f A per second
    amplitude = float(min(c.amplitude_rad, 0.95 * room.min(),
                          speed_cap / (2 * np.pi * c.f_high_hz * (1 + 0.05 * spec.n_joints))))
    if amplitude <= 0:
        raise ValueError(f"{spec.name}: the default pose leaves no room inside the limits "
                         f"minus the margin {limit_margin_rad} rad")
    chirp_s = c.chirp_fraction * c.duration_s
    offsets = np.zeros((n_ticks, spec.n_joints))
    in_chirp = t < chirp_s
    for j in range(spec.n_joints):
        scale = 1 + 0.05 * j
        phase = _chirp_phase(t[in_chirp], c.f_low_hz * scale, c.f_high_hz * scale, chirp_s)
        offsets[in_chirp, j] = amplitude * np.sin(phase + 2 * np.pi * j / spec.n_joints)
    steps_from = np.flatnonzero(t >= chirp_s)
    if steps_from.size:
        offsets[steps_from] = _steps(len(steps_from), spec.n_joints, amplitude, c,
                                     control_dt_s, 0.9 * max_step_rad, offsets[steps_from[0] - 1])
    envelope = _smoothstep(np.clip(t / c.ramp_s, 0, 1)) * _smoothstep(
        np.clip((c.duration_s - control_dt_s - t) / c.ramp_s, 0, 1)) if c.ramp_s else 1.0
    targets = spec.default_pose_rad + offsets * np.reshape(envelope, (-1, 1))
    return np.clip(targets, lo, hi), amplitude


def _chirp_phase(t, f0, f1, duration):
    """Phase of an exponential sweep from f0 to f1 over `duration` s."""
    k = (f1 / f0) ** (1.0 / duration)
    return 2 * np.pi * f0 * (k ** t - 1) / np.log(k)


def _steps(n_ticks: int, n_joints: int, amplitude: float, c: ExcitationConfig, dt: float,
           max_move: float, start: np.ndarray) -> np.ndarray:
    """Levels +-amplitude/2 held `step_hold_s`, reached by ramps of at most `max_move` a tick,
    starting from `start` (where the chirps ended)."""
    rng = np.random.default_rng(c.seed)
    hold = max(1, int(round(c.step_hold_s / dt)))
    levels = 0.5 * amplitude * rng.choice([-1.0, 1.0], size=(n_ticks // hold + 1, n_joints))
    wanted = np.repeat(levels, hold, axis=0)[:n_ticks]
    out = np.empty((n_ticks, n_joints))
    current = np.asarray(start, float).copy()
    for k in range(n_ticks):
        current = current + np.clip(wanted[k] - current, -max_move, max_move)
        out[k] = current
    return out


def _smoothstep(x):
    return x * x * (3 - 2 * x)


class ExcitationActor:
    """The excitation as the deploy runtime's actor: tick k's action is the k-th target's
    offset from the default pose in units of the amplitude (`mapper()` maps it back)."""

    def __init__(self, spec: RobotSpec, targets: np.ndarray, amplitude_rad: float):
        self.spec, self.amplitude = spec, amplitude_rad
        self.actions = (targets - spec.default_pose_rad) / amplitude_rad
        self.backend = "excitation"
        self.calls = 0

    @property
    def duration_ticks(self) -> int:
        return len(self.actions)

    def mapper(self) -> ActionMapper:
        return ActionMapper(self.spec, ActionConfig(scale_rad=self.amplitude))

    def check_body(self, *args) -> None:  # the actor is built for this body: nothing to check
        pass

    def act(self, observation) -> np.ndarray:
        k = min(self.calls, len(self.actions) - 1)
        self.calls += 1
        return self.actions[k].copy()
