"""Per-robot hardware config: which servo drives which joint, and how its units map to SI.

`configs/hw/<robot>_<protocol>.yaml` loads into a frozen `HwConfig` (unknown keys rejected
with the key and file named) and is validated against the robot spec: every spec joint exactly
once, unique servo ids, directions +-1, a baud the link supports, joint limits that fit the
servo's tick range. `HwConfig.calibration(spec)` gives a `JointCalibration` with vectorised
conversions in the spec's joint order.

Angle convention (one place, used by both directions):
    q_rad = zero_offset_rad + direction * (ticks - centre_tick) * 2*pi / ticks_per_rev
so with zero_offset_rad 0 the servo's centre tick (2048 of 0..4095) is the joint's 0 rad, and
`zero_offset_rad` is the joint angle at which the servo reads its centre tick. Velocity and
current are signed register counts; `direction` flips them too.

Bus order is the order of `joints` in the YAML (the order ids go into a sync read / write);
`bus_to_spec` / `spec_to_bus` permute between it and the spec's canonical order.
The board protocol addresses joints by their position in that list and has no ids.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gaitforge.robots.configio import ConfigError, from_dict, load_yaml
from gaitforge.robots.spec import RobotSpec, load_robot_spec
from gaitforge.robots.types import JointCommand, RobotState

HW_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "hw"
# Baud rates the Dynamixel X series supports (e-Manual, Baud Rate (8) register values 0..7).
X_SERIES_BAUDS = (9600, 57600, 115200, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 4_500_000)
MAX_DXL_ID = 252  # 253 is reserved, 254 is broadcast
RPM_TO_RAD_S = 2.0 * math.pi / 60.0


@dataclass(frozen=True)
class JointServo:
    name: str  # joint name as in the robot spec
    id: int | None = None  # Dynamixel id 0..252; omitted for the board protocol
    direction: int = 1  # +1: joint angle grows with ticks, -1: mounted mirrored
    zero_offset_rad: float = 0.0  # joint angle (rad) at which the servo reads its centre tick

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(
                f"joint '{self.name}': direction must be 1 or -1, got {self.direction}"
            )
        if self.id is not None and not 0 <= self.id <= MAX_DXL_ID:
            raise ValueError(f"joint '{self.name}': id must be in 0..{MAX_DXL_ID}, got {self.id}")
        if not math.isfinite(self.zero_offset_rad):
            raise ValueError(f"joint '{self.name}': zero_offset_rad must be finite")


@dataclass(frozen=True)
class ImuConfig:
    """Where the IMU comes from. With protocol `board` the board's own link carries it (port
    omitted). A pure Dynamixel bus has no IMU: it comes from a board on a second serial port
    (`port`, `baud`) speaking the board protocol."""

    source: Literal["board"] = "board"
    port: str | None = None
    baud: int = 1_000_000

    def __post_init__(self):
        if self.baud <= 0:
            raise ValueError(f"imu.baud must be > 0, got {self.baud}")


@dataclass(frozen=True)
class HwConfig:
    robot: str  # robot spec name
    protocol: Literal["dynamixel", "board"]
    port: str  # device path or pyserial URL; the CLI's --port overrides it
    baud: int
    joints: tuple[JointServo, ...]  # bus order
    imu: ImuConfig = ImuConfig()
    ticks_per_rev: int = 4096  # X series position: 0..4095, centre 2048
    velocity_unit_rad_s: float = 0.229 * RPM_TO_RAD_S  # Present Velocity: 0.229 rev/min a count
    current_unit_a: float = 0.00269  # Present Current: 2.69 mA a count
    torque_constant_nm_per_a: float = 1.07  # output torque per amp, see configs/hw YAML notes
    position_p_gain: int = 640  # Dynamixel Position P Gain (84) written at configure: the
    # X series' factory value; the servo's own value is never trusted (a damped servo reads 0)

    def __post_init__(self):
        if self.protocol == "dynamixel" and self.baud not in X_SERIES_BAUDS:
            raise ValueError(
                f"baud {self.baud} is not an X-series rate (one of "
                f"{', '.join(str(b) for b in X_SERIES_BAUDS)})"
            )
        if self.baud <= 0:
            raise ValueError(f"baud must be > 0, got {self.baud}")
        if not self.port:
            raise ValueError("port must not be empty")
        if not self.joints:
            raise ValueError("joints: at least one joint is required")
        seen: set[str] = set()
        for j in self.joints:
            if j.name in seen:
                raise ValueError(f"joints: joint '{j.name}' is listed twice")
            seen.add(j.name)
        if self.protocol == "dynamixel":
            self._check_ids()
            if self.imu.port is None:
                raise ValueError(
                    "imu.port: a Dynamixel bus has no IMU; give the port of the "
                    "board that serves it"
                )
        else:
            for j in self.joints:
                if j.id is not None:
                    raise ValueError(
                        f"joint '{j.name}': 'id' is for protocol dynamixel; the "
                        "board addresses joints by their order in 'joints'"
                    )
            if self.imu.port is not None:
                raise ValueError(
                    "imu.port: with protocol board the IMU comes over the same link; omit imu.port"
                )
        if self.ticks_per_rev < 2:
            raise ValueError(f"ticks_per_rev must be >= 2, got {self.ticks_per_rev}")
        for name in ("velocity_unit_rad_s", "current_unit_a", "torque_constant_nm_per_a"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def _check_ids(self):
        owner: dict[int, str] = {}
        for j in self.joints:
            if j.id is None:
                raise ValueError(f"joint '{j.name}': 'id' is required for protocol dynamixel")
            if j.id in owner:
                raise ValueError(f"joint '{j.name}': id {j.id} is already used by '{owner[j.id]}'")
            owner[j.id] = j.name

    def with_port(self, port: str) -> HwConfig:
        return dataclasses.replace(self, port=port)

    def check_against(self, spec: RobotSpec) -> None:
        """Raise ValueError naming the joint if this config does not fit `spec`: every spec
        joint once, the board's channels in spec order, and (Dynamixel) every joint's limits
        inside the servo's tick range."""
        JointCalibration(self, spec)

    def _check_joint_names(self, spec: RobotSpec) -> None:
        if spec.name != self.robot:
            raise ValueError(f"robot: config is for '{self.robot}', spec is '{spec.name}'")
        names = [j.name for j in self.joints]
        for name in spec.joint_names:
            if name not in names:
                raise ValueError(f"joints: spec joint '{name}' of {spec.name} is missing")
        for name in names:
            if name not in spec.joint_names:
                raise ValueError(
                    f"joints: '{name}' is not a joint of {spec.name} "
                    f"(known: {', '.join(spec.joint_names)})"
                )
        if self.protocol != "dynamixel" and names != list(spec.joint_names):
            # The board protocol carries joints in channel order and the host sends the spec's
            # order: the list must be the spec's order (channel i = spec joint i).
            first = next(i for i, (a, b) in enumerate(zip(names, spec.joint_names,
                                                           strict=True)) if a != b)
            raise ValueError(f"joints: on the board protocol channel {first} must be "
                             f"'{spec.joint_names[first]}' (spec order), got '{names[first]}'")

    def calibration(self, spec: RobotSpec) -> JointCalibration:
        return JointCalibration(self, spec)


def _flip(direction: np.ndarray, values) -> np.ndarray | None:
    """values * direction (a signed quantity seen from the other side), None stays None."""
    return None if values is None else direction * np.asarray(values, np.float64)


class JointCalibration:
    """A validated HwConfig bound to a spec: arrays and unit conversions in spec joint order.

    The one definition of how a servo's numbers relate to a joint's, used by the host body and
    by the virtual devices alike: angles (joint rad <-> servo rad from its centre <-> ticks),
    velocity and current register units, and whole states and commands as the board protocol
    carries them (servo side: servo radians, signs of the servo).
    """

    def __init__(self, cfg: HwConfig, spec: RobotSpec):
        cfg._check_joint_names(spec)
        self.cfg, self.spec = cfg, spec
        bus_names = [j.name for j in cfg.joints]
        # spec_values = bus_values[bus_to_spec]; bus_values = spec_values[spec_to_bus]
        self.bus_to_spec = np.array([bus_names.index(n) for n in spec.joint_names], np.int64)
        self.spec_to_bus = np.argsort(self.bus_to_spec)
        ordered = [cfg.joints[i] for i in self.bus_to_spec]
        self.direction = np.array([j.direction for j in ordered], np.float64)
        self.zero_offset_rad = np.array([j.zero_offset_rad for j in ordered], np.float64)
        if cfg.protocol == "dynamixel":
            self.ids = tuple(int(j.id) for j in ordered)  # spec order
            self.bus_ids = tuple(int(j.id) for j in cfg.joints)  # bus order
        else:  # board channel = position in the YAML list
            self.ids = tuple(int(i) for i in self.bus_to_spec)
            self.bus_ids = tuple(range(len(cfg.joints)))
        self.centre_tick = cfg.ticks_per_rev // 2
        self.max_tick = cfg.ticks_per_rev - 1
        self._rad_per_tick = 2.0 * math.pi / cfg.ticks_per_rev
        for arr in (self.bus_to_spec, self.spec_to_bus, self.direction, self.zero_offset_rad):
            arr.flags.writeable = False
        if cfg.protocol == "dynamixel":
            self._check_tick_range()  # the board maps angles itself

    def _check_tick_range(self) -> None:
        """Every joint's limits must map inside the servo's 0..max_tick (a Dynamixel register
        limit); ValueError names the first joint, in spec order, that does not."""
        spec = self.spec
        at_lower = self._ticks(self.joint_to_servo_rad(spec.lower_rad))
        at_upper = self._ticks(self.joint_to_servo_rad(spec.upper_rad))
        lo, hi = np.minimum(at_lower, at_upper), np.maximum(at_lower, at_upper)
        bad = np.flatnonzero((lo < 0) | (hi > self.max_tick))
        if bad.size:
            i = int(bad[0])
            js = spec.joints[i]
            raise ValueError(
                f"joint '{js.name}': limits [{js.lower_rad:g}, {js.upper_rad:g}] rad map to "
                f"ticks [{lo[i]}, {hi[i]}], outside 0..{self.max_tick} (check zero_offset_rad "
                f"{self.zero_offset_rad[i]:g} and direction {int(self.direction[i])})"
            )

    def to_spec_order(self, bus_values) -> np.ndarray:
        return np.asarray(bus_values)[self.bus_to_spec]

    def to_bus_order(self, spec_values) -> np.ndarray:
        return np.asarray(spec_values)[self.spec_to_bus]

    # Angles --------------------------------------------------------------------------------
    def joint_to_servo_rad(self, q_rad) -> np.ndarray:
        """Joint angle -> servo shaft angle from its centre (what the board protocol carries)."""
        return self.direction * (np.asarray(q_rad, np.float64) - self.zero_offset_rad)

    def servo_to_joint_rad(self, servo_rad) -> np.ndarray:
        return self.zero_offset_rad + self.direction * np.asarray(servo_rad, np.float64)

    def _ticks(self, servo_rad: np.ndarray) -> np.ndarray:
        """Servo radians (finite) -> nearest tick, int64, not range-checked."""
        return np.rint(self.centre_tick + servo_rad / self._rad_per_tick).astype(np.int64)

    def rad_to_ticks(self, q_rad, *, clip: bool = False) -> np.ndarray:
        """Goal / Present Position counts (int64). Raises ValueError on a non-finite angle, and
        on a tick outside 0..ticks_per_rev-1 unless `clip` (what a virtual servo reports for a
        joint pushed past its range): the host clips to the spec limits first, never this."""
        servo = self.joint_to_servo_rad(q_rad)
        if not np.all(np.isfinite(servo)):
            raise ValueError(f"rad_to_ticks: non-finite joint angle {np.asarray(q_rad)}")
        ticks = self._ticks(servo)
        if clip:
            return np.clip(ticks, 0, self.max_tick)
        bad = np.flatnonzero((ticks < 0) | (ticks > self.max_tick))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"rad_to_ticks: joint '{self.spec.joint_names[i]}' angle "
                f"{float(np.asarray(q_rad)[i]):g} rad is tick {ticks[i]}, outside "
                f"0..{self.max_tick}"
            )
        return ticks

    def ticks_to_rad(self, ticks) -> np.ndarray:
        servo = (np.asarray(ticks, np.float64) - self.centre_tick) * self._rad_per_tick
        return self.servo_to_joint_rad(servo)

    # Velocity and effort -------------------------------------------------------------------
    def velocity_units_to_rad_s(self, units) -> np.ndarray:
        return self.direction * np.asarray(units, np.float64) * self.cfg.velocity_unit_rad_s

    def rad_s_to_velocity_units(self, qd_rad_s) -> np.ndarray:
        """Inverse of velocity_units_to_rad_s, rounded (for virtual devices)."""
        units = self.direction * np.asarray(qd_rad_s, np.float64) / self.cfg.velocity_unit_rad_s
        return np.rint(units).astype(np.int64)

    def current_units_to_nm(self, units) -> np.ndarray:
        """Present Current counts -> joint torque estimate, N*m (torque ~ kt * current)."""
        amps = np.asarray(units, np.float64) * self.cfg.current_unit_a
        return self.direction * amps * self.cfg.torque_constant_nm_per_a

    def nm_to_current_units(self, torque_nm) -> np.ndarray:
        """Inverse of current_units_to_nm, rounded and clipped to the register (int16; for
        virtual devices)."""
        amps = (
            self.direction * np.asarray(torque_nm, np.float64) / self.cfg.torque_constant_nm_per_a
        )
        return np.clip(np.rint(amps / self.cfg.current_unit_a), -32768, 32767).astype(np.int64)

    # Whole states and commands, as the board protocol carries them -------------------------
    # Angles map with the offset; velocities and torques only change sign (direction is +-1,
    # so the same flip maps either way); gains (>= 0), mode, time and IMU are the same.
    def joint_to_servo_state(self, state: RobotState) -> RobotState:
        """A measured state as the servos see it: servo radians from their centres, and
        velocities and torques with the servos' signs."""
        return self._state(state, self.joint_to_servo_rad)

    def servo_to_joint_state(self, state: RobotState) -> RobotState:
        """Inverse of joint_to_servo_state."""
        return self._state(state, self.servo_to_joint_rad)

    def joint_to_servo_command(self, command: JointCommand) -> JointCommand:
        """Targets in servo radians, feed-forward torque with the servos' signs."""
        return self._command(command, self.joint_to_servo_rad)

    def servo_to_joint_command(self, command: JointCommand) -> JointCommand:
        """Inverse of joint_to_servo_command."""
        return self._command(command, self.servo_to_joint_rad)

    def _state(self, state: RobotState, angle: Callable[..., np.ndarray]) -> RobotState:
        d = self.direction
        return dataclasses.replace(
            state, joint_pos_rad=angle(state.joint_pos_rad),
            joint_vel_rad_s=_flip(d, state.joint_vel_rad_s),
            joint_torque_nm=_flip(d, state.joint_torque_nm))

    def _command(self, command: JointCommand, angle: Callable[..., np.ndarray]) -> JointCommand:
        return dataclasses.replace(command, position_rad=angle(command.position_rad),
                                   torque_ff_nm=_flip(self.direction, command.torque_ff_nm))


def resolve_hw_config_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bare name (`servo_dog_dynamixel`) looked up in configs/hw/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = HW_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in HW_CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown hardware config '{name_or_path}' (known: {', '.join(known)})")
    return path


def load_hw_config(
    name_or_path: str | Path, *, port: str | None = None, spec: RobotSpec | None = None
) -> HwConfig:
    """Load, override the port (the CLI's --port), and validate against the robot spec
    (loaded by the config's `robot` name unless given). Errors are ConfigError naming the file."""
    path = resolve_hw_config_path(name_or_path)
    cfg = from_dict(HwConfig, load_yaml(path), source=str(path))
    if port:
        cfg = cfg.with_port(port)
    spec = spec if spec is not None else load_robot_spec(cfg.robot)
    try:
        cfg.check_against(spec)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err
    return cfg
