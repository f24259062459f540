"""A gamepad as a command source (`gaitforge deploy --teleop gamepad`), read through the Linux
input layer with `evdev` (optional: `pip install 'gaitforge[console]'`).

The mapping is a YAML file (default `configs/teleop/gamepad.yaml`): which absolute axis drives
vx, vy and the yaw rate (and whether it is inverted), which buttons damp, re-arm and end the
episode, and the dead zone. A stick's raw value v in [min, max] (the device's `absinfo`) is
first scaled to u = 2 (v - min) / (max - min) - 1 in [-1, 1]; then the dead zone d gives
0 for |u| <= d and sign(u) (|u| - d) / (1 - d) beyond it (so the command starts from 0 at the
zone's edge and reaches the full range at the stick's end), times -1 if inverted, times the
command limit of that axis. A button acts when it is pressed (value 1), not on release (0)
or on the kernel's auto-repeat (2).

Losing the device (unplugged, out of range: its reads fail) is reported as `lost`, and the
command drops to zero; the deploy tick latches damping, as for a stale state. Every
`reconnect_s` (on the injected clock) the source tries to open the device again; once back,
the sticks start from where they are and the operator may re-arm.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError, from_dict, load_yaml

from .commands import CommandLimits, OperatorInput, StepCommand
from .optional import require

DEFAULT_MAP = Path(__file__).resolve().parent.parent / "configs" / "teleop" / "gamepad.yaml"
AXES = ("vx", "vy", "yaw")


@dataclass(frozen=True)
class AxisMap:
    code: str  # an evdev absolute axis name, e.g. ABS_Y
    invert: bool = False


@dataclass(frozen=True)
class GamepadMap:
    axes: dict[str, AxisMap]  # vx, vy, yaw
    buttons: dict[str, str]  # damp, rearm, stop -> evdev key name, e.g. BTN_EAST
    dead_zone: float = 0.1  # fraction of the stick's half range
    reconnect_s: float = 0.5

    def __post_init__(self):
        if sorted(self.axes) != sorted(AXES):
            raise ValueError(f"axes: expected {', '.join(AXES)}, got {', '.join(self.axes)}")
        if sorted(self.buttons) != ["damp", "rearm", "stop"]:
            raise ValueError(f"buttons: expected damp, rearm, stop; got "
                             f"{', '.join(self.buttons)}")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError(f"dead_zone must be in [0, 1), got {self.dead_zone}")
        if not self.reconnect_s > 0:
            raise ValueError(f"reconnect_s must be > 0, got {self.reconnect_s}")


def load_gamepad_map(path: str | Path | None = None) -> GamepadMap:
    path = Path(path) if path else DEFAULT_MAP
    return from_dict(GamepadMap, load_yaml(path), source=str(path))


def scaled(value: float, lo: float, hi: float, dead_zone: float) -> float:
    """A raw axis value -> [-1, 1] with the dead zone (see the module docstring)."""
    u = min(max(2.0 * (value - lo) / (hi - lo) - 1.0, -1.0), 1.0)
    if abs(u) <= dead_zone:
        return 0.0
    return float(np.sign(u) * (abs(u) - dead_zone) / (1.0 - dead_zone))


@dataclass
class PadState:
    """What the events have said so far: stick positions (raw) and the requests pending."""

    mapping: GamepadMap
    codes: dict  # evdev name -> number (evdev.ecodes.ecodes)
    ranges: dict[int, tuple[float, float]]  # axis code -> (min, max)
    raw: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        self._axis = {self.codes[a.code]: (k, a.invert)
                      for k, a in enumerate(self.mapping.axes[n] for n in AXES)}
        self._button = {self.codes[name]: request for request, name in
                        self.mapping.buttons.items()}

    def apply(self, ev_type: int, code: int, value: int, requests: list[str]) -> None:
        if ev_type == self.codes["EV_ABS"] and code in self._axis:
            self.raw[code] = value
        elif ev_type == self.codes["EV_KEY"] and value == 1 and code in self._button:
            requests.append(self._button[code])

    def unit(self) -> np.ndarray:
        """(vx, vy, yaw) sticks in [-1, 1] after the dead zone and inversion."""
        out = np.zeros(3)
        for code, (k, invert) in self._axis.items():
            if code in self.raw:
                lo, hi = self.ranges[code]
                out[k] = scaled(self.raw[code], lo, hi, self.mapping.dead_zone)
                out[k] = -out[k] if invert else out[k]
        return out


def open_evdev(path: str | None, mapping: GamepadMap):
    """The evdev InputDevice at `path`, or the first one with the mapping's vx axis and damp
    button; a ConfigError that says what to check if there is none."""
    evdev = require("evdev", "console", "--teleop gamepad")
    e = evdev.ecodes
    if path:
        try:
            return evdev.InputDevice(path)
        except OSError as err:
            raise ConfigError(f"--gamepad {path}: cannot open it ({err.strerror or err}); "
                              "check the path (`ls /dev/input/by-id`) and that you may read "
                              "it (the `input` group)") from None
    for candidate in evdev.list_devices():
        try:
            dev = evdev.InputDevice(candidate)
        except OSError:
            continue
        caps = dev.capabilities()
        if e.ecodes[mapping.axes["vx"].code] in [c[0] if isinstance(c, tuple) else c
                                                  for c in caps.get(e.EV_ABS, [])] and \
                e.ecodes[mapping.buttons["damp"]] in caps.get(e.EV_KEY, []):
            return dev
        dev.close()
    raise ConfigError("--teleop gamepad: no gamepad found under /dev/input with the mapping's "
                      f"{mapping.axes['vx'].code} axis and {mapping.buttons['damp']} button; "
                      "plug one in, check you may read /dev/input/event* (the `input` group), "
                      "or give --gamepad /dev/input/eventN")


class GamepadTeleop:
    """A command source on an evdev device (see the module docstring). `open_device(path,
    mapping)` and `codes` are injected by tests (default: evdev's)."""

    can_rearm = True

    def __init__(self, path: str | None = None, mapping: GamepadMap | None = None,
                 limits: CommandLimits | None = None, *,
                 clock: Callable[[], float] = time.monotonic, open_device=None, codes=None):
        self.mapping = mapping or load_gamepad_map()
        self._open = open_device or open_evdev
        self.codes = codes if codes is not None else \
            require("evdev", "console", "--teleop gamepad").ecodes.ecodes
        unknown = [n for n in (*(a.code for a in self.mapping.axes.values()),
                               *self.mapping.buttons.values()) if n not in self.codes]
        if unknown:
            raise ConfigError(f"gamepad mapping: unknown input code(s) {', '.join(unknown)} "
                              "(names as in evdev.ecodes: ABS_X, BTN_EAST, ...)")
        self.clock, self.path = clock, path
        self.command = StepCommand(limits or CommandLimits())
        self.device = None
        self.lost, self._retry_at = "", 0.0
        self._connect(self._open(path, self.mapping))

    @property
    def current(self) -> np.ndarray:
        return self.command.value

    def _connect(self, device) -> None:
        ranges, raw = {}, {}
        for name in (self.mapping.axes[a].code for a in AXES):
            info = device.absinfo(self.codes[name])
            ranges[self.codes[name]] = (float(info.min), float(info.max))
            raw[self.codes[name]] = float(info.value)  # where the stick is now
        self.device, self.lost = device, ""
        self.path = self.path or getattr(device, "path", None)
        self.pad = PadState(self.mapping, self.codes, ranges, raw)
        self.command.set(self.pad.unit() * self.command.limits.high)

    def poll(self, policy_time_s: float) -> OperatorInput:
        if self.device is None:
            self._reconnect()
            if self.device is None:
                return OperatorInput(self.command.value, (), self.lost)
        requests: list[str] = []
        try:
            for ev in self.device.read():
                self.pad.apply(ev.type, ev.code, ev.value, requests)
        except BlockingIOError:
            pass  # nothing new
        except OSError as err:
            self._lose(f"gamepad {self.path}: {err.strerror or err}")
            return OperatorInput(self.command.value, tuple(requests), self.lost)
        self.command.set(self.pad.unit() * self.command.limits.high)
        return OperatorInput(self.command.value, tuple(requests))

    def _lose(self, why: str) -> None:
        self.close()
        self.device, self.lost = None, why
        self.command.zero()
        self._retry_at = self.clock() + self.mapping.reconnect_s

    def _reconnect(self) -> None:
        if self.clock() < self._retry_at:
            return
        try:
            self._connect(self._open(self.path, self.mapping))
        except (OSError, ConfigError):
            self._retry_at = self.clock() + self.mapping.reconnect_s

    def close(self) -> None:
        if self.device is not None:
            with contextlib.suppress(OSError):
                self.device.close()
            self.device = None
