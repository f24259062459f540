"""Where the velocity command comes from: one small interface, polled once per control tick.

    source.poll(policy_time_s) -> OperatorInput(command, requests, lost)

`command` is the velocity command in force (vx m/s, vy m/s, yaw rate rad/s), a float64 array
of 3 that the deploy tick hands to the observation builder and logs (`velocity_command`).
`requests` are the operator's acts since the last poll, in order: "damp" (latched damping),
"rearm" (soft-start again after damping, a watchdog or an e-stop) and "stop" (end the episode
through the shutdown sequence). `lost` is non-empty while the input device is gone (a
gamepad unplugged): the deploy tick latches damping, as for a stale state, and refuses a
re-arm until it is back. `policy_time_s` is the time the policy has run (ticks x period): a
schedule follows it, so soft start and pauses do not eat into a segment.

Sources here: `FixedCommand` (one command, today's `--command`) and `CommandSchedule`
(`--commands FILE`, segments of fixed duration). The operator's live sources follow the same
interface: `control/keyboard.py` (the terminal) and `control/gamepad.py` (Linux evdev), both on
`StepCommand`'s limits. `can_rearm` says whether an operator is there to re-arm: only then
does a latched fault wait for them instead of ending the episode.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from gaitforge.robots.configio import ConfigError, load_yaml

REQUESTS = ("damp", "rearm", "stop")


@dataclass(frozen=True)
class OperatorInput:
    command: np.ndarray  # (3,) float64: vx m/s, vy m/s, yaw rate rad/s
    requests: tuple[str, ...] = ()  # of REQUESTS, in the order the operator gave them
    lost: str = ""  # why the input device is gone; "" while it is there


class CommandSource(Protocol):
    can_rearm: bool  # an operator is there: a latched fault waits for a re-arm

    @property
    def current(self) -> np.ndarray:
        """The command in force: the last one `poll` gave (before it: the initial one)."""

    def poll(self, policy_time_s: float) -> OperatorInput: ...

    def close(self) -> None: ...


def _vector(command, what: str) -> np.ndarray:
    try:
        arr = np.asarray(command, np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ConfigError(f"{what}: expected [vx, vy, yaw] (three finite numbers: m/s, m/s, "
                          f"rad/s), got {command!r}")
    return arr


class FixedCommand:
    """The same command every tick (`--command VX,VY,YAW`)."""

    can_rearm = False

    def __init__(self, command=(0.0, 0.0, 0.0)):
        self._input = OperatorInput(_vector(command, "command"))

    @property
    def current(self) -> np.ndarray:
        return self._input.command

    def poll(self, policy_time_s: float) -> OperatorInput:
        return self._input

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Segment:
    duration_s: float
    command: tuple[float, float, float]


class CommandSchedule:
    """Segments of fixed duration, on policy time: segment k is in force from the sum of the
    durations before it up to (not including) the sum through it; after the last one, zero
    (stand). Equal schedules give equal episodes: the repeatable experiment."""

    can_rearm = False

    def __init__(self, segments: list[Segment]):
        if not segments:
            raise ConfigError("a command schedule needs at least one segment")
        self.segments = segments
        self.ends_s = list(np.cumsum([s.duration_s for s in segments]))
        self._inputs = [OperatorInput(np.asarray(s.command, np.float64)) for s in segments]
        self._inputs.append(OperatorInput(np.zeros(3)))
        self.current = self._inputs[0].command

    @property
    def total_s(self) -> float:
        return float(self.ends_s[-1])

    def poll(self, policy_time_s: float) -> OperatorInput:
        # 1e-9: policy time is ticks x period in floats; 0.02 s * 250 must reach 5 s
        given = self._inputs[bisect.bisect_right(self.ends_s, policy_time_s + 1e-9)]
        self.current = given.command
        return given

    def close(self) -> None:
        pass


def load_schedule(path: str | Path) -> CommandSchedule:
    """`segments: [{duration_s: 5, command: [0.3, 0, 0]}, ...]` from a YAML file; a bad file
    is a ConfigError naming it, the segment and the field."""
    path = Path(path)
    data = load_yaml(path)  # missing, a folder, not UTF-8, not YAML: a sentence naming it
    if not isinstance(data, dict) or set(data) != {"segments"} or \
            not isinstance(data["segments"], list):
        raise ConfigError(f"{path}: expected one key, segments: a list of {{duration_s: S, "
                          "command: [vx, vy, yaw]}")
    segments = []
    for k, item in enumerate(data["segments"]):
        where = f"{path}: segments[{k}]"
        if not isinstance(item, dict) or set(item) != {"duration_s", "command"}:
            raise ConfigError(f"{where}: expected exactly duration_s and command, got {item!r}")
        d = item["duration_s"]
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) \
                or d <= 0:
            raise ConfigError(f"{where}.duration_s: expected a positive number of seconds, "
                              f"got {d!r}")
        vec = _vector(item["command"], f"{where}.command")
        segments.append(Segment(float(d), tuple(float(v) for v in vec)))
    return CommandSchedule(segments)


@dataclass(frozen=True)
class CommandLimits:
    """The operator's command range and step (what a key press or a full stick gives)."""

    max_m_s: tuple[float, float] = (0.3, 0.15)  # |vx|, |vy| (servo_dog's training ranges)
    max_yaw_rad_s: float = 0.5
    step: tuple[float, float, float] = (0.05, 0.05, 0.1)  # per key press

    @property
    def high(self) -> np.ndarray:
        return np.array([*self.max_m_s, self.max_yaw_rad_s], np.float64)


@dataclass
class StepCommand:
    """The live sources' command: stepped (keys) or set (sticks), always within the limits."""

    limits: CommandLimits = field(default_factory=CommandLimits)
    value: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def step(self, axis: int, sign: int) -> None:
        value = self.value.copy()
        value[axis] = round(value[axis] + sign * self.limits.step[axis], 9)
        self.set(value)

    def set(self, value) -> None:
        high = self.limits.high
        self.value = np.clip(np.asarray(value, np.float64), -high, high)

    def zero(self) -> None:
        self.value = np.zeros(3)
