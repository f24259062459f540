"""Policy I/O: the ONE place that turns robot state into an observation and an action into
joint commands. Simulation and hardware both use it; the exported bundle records its layout.

Observation (float32, in this order; value = scale * quantity):
    projected_gravity  3   1             gravity direction in the trunk frame (IMU quaternion)
    gyro               3   rad/s         trunk angular velocity, body frame
    joint_pos          n   rad           joint position minus the default pose
    joint_vel          n   rad/s         joint velocity
    last_action        n   1             previous policy action, in [-1, 1]
    command            3   m/s, m/s, rad/s   velocity command (vx, vy, yaw rate); with a heading
                                         hold, its yaw rate corrected by the heading error
    gait_phase         2   1             sin, cos of the gait clock (only with a gait)

Action: a in [-1, 1]^n  ->  joint target = default pose + gait(t) + action_scale * a, clipped
to limits. `gait(t)` is an optional open-loop trot (a trajectory generator, as in PMTG, Iscen
et al. 2018). With phase_i = 2 pi (f t + phase_offset[i]) joint i moves by

    swing_amplitude_rad[i] * max(0, sin(phase_i))
    + (stride_rad_per_m_s[i] * vx_cmd + stride_rad_per_m_s_lateral[i] * vy_cmd
       + stride_rad_per_rad_s[i] * yaw_cmd) * cos(phase_i)

(lift the foot in the first half of the cycle; swing it forward in the air and back on the
ground, in proportion to the commanded forward speed; sideways with the lateral command; the
two sides apart with the yaw-rate command, to turn). The policy learns corrections to a
gait that already steps, which is what makes walking learnable in minutes on two CPU cores.
The clock is a pure function of `RobotState.time_s`, so simulation and hardware compute it
the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, RobotState


@dataclass(frozen=True)
class HeadingHoldConfig:
    """The yaw-rate command the policy sees is corrected by gain_per_s (rad/s per rad) times
    the heading error, the error capped at cap_rad (control/heading.py); gain 0: off."""

    gain_per_s: float = 0.0
    cap_rad: float = 0.5

    def __post_init__(self):
        if not self.gain_per_s >= 0:
            raise ValueError(f"heading_hold.gain_per_s must be >= 0, got {self.gain_per_s}")
        if not self.cap_rad > 0:
            raise ValueError(f"heading_hold.cap_rad must be > 0, got {self.cap_rad}")

    @property
    def enabled(self) -> bool:
        return self.gain_per_s > 0


@dataclass(frozen=True)
class ObservationConfig:
    gyro_scale: float = 0.25
    joint_pos_scale: float = 1.0
    joint_vel_scale: float = 0.05
    command_scale: tuple[float, float, float] = (2.0, 2.0, 0.25)
    heading_hold: HeadingHoldConfig = HeadingHoldConfig()  # what the command term carries


@dataclass(frozen=True)
class GaitConfig:
    """An open-loop stepping pattern added to the policy's targets; frequency 0 turns it off.

    Per joint, in the spec's joint order: the phase offset (fraction of a cycle), the target
    offset at the top of the swing (rad) and the stride per commanded forward speed
    (rad per m/s), lateral speed (rad per m/s) and yaw rate (rad per rad/s); an empty stride
    is none.
    """

    frequency_hz: float = 0.0
    phase_offset: tuple[float, ...] = ()
    swing_amplitude_rad: tuple[float, ...] = ()
    stride_rad_per_m_s: tuple[float, ...] = ()
    stride_rad_per_m_s_lateral: tuple[float, ...] = ()
    stride_rad_per_rad_s: tuple[float, ...] = ()

    def __post_init__(self):
        if not self.frequency_hz >= 0:
            raise ValueError(f"frequency_hz must be >= 0, got {self.frequency_hz}")
        n = len(self.phase_offset)
        if self.frequency_hz > 0 and len(self.swing_amplitude_rad) != n:
            raise ValueError(f"phase_offset has {n} entries but "
                             f"swing_amplitude_rad has {len(self.swing_amplitude_rad)}")
        for name in STRIDES:
            if self.frequency_hz > 0 and len(getattr(self, name)) not in (0, n):
                raise ValueError(f"phase_offset has {n} entries but "
                                 f"{name} has {len(getattr(self, name))}")

    @property
    def enabled(self) -> bool:
        return self.frequency_hz > 0

    def check(self, spec: RobotSpec) -> None:
        if self.enabled and len(self.phase_offset) != spec.n_joints:
            raise ValueError(f"gait: phase_offset and swing_amplitude_rad need one entry per "
                             f"joint of {spec.name} ({spec.n_joints}), got "
                             f"{len(self.phase_offset)}")

    def phase_rad(self, time_s: float) -> float:
        """The gait clock's phase, 2 pi f t."""
        return 2.0 * np.pi * self.frequency_hz * time_s

    def offsets_rad(self, time_s: float, command=(0.0, 0.0, 0.0)) -> np.ndarray:
        """Per-joint target offset of the stepping pattern at time_s for the velocity command
        (vx, vy, yaw rate)."""
        phase = 2.0 * np.pi * (self.frequency_hz * time_s + np.asarray(self.phase_offset))
        out = np.asarray(self.swing_amplitude_rad) * np.maximum(0.0, np.sin(phase))
        for name, c in zip(STRIDES, command, strict=True):
            if getattr(self, name):
                out = out + np.asarray(getattr(self, name)) * float(c) * np.cos(phase)
        return out


# the strides per command component (vx, vy, yaw rate), in the command's order
STRIDES = ("stride_rad_per_m_s", "stride_rad_per_m_s_lateral", "stride_rad_per_rad_s")


@dataclass(frozen=True)
class ActionConfig:
    scale_rad: float = 0.25  # joint target offset at |action| = 1
    gait: GaitConfig = GaitConfig()

    def __post_init__(self):
        if not self.scale_rad > 0:
            raise ValueError("scale_rad must be > 0")


def projected_gravity(quat_wxyz: np.ndarray) -> np.ndarray:
    """World gravity direction (0, 0, -1) expressed in the body frame: R(q)^T @ [0, 0, -1]."""
    w, x, y, z = quat_wxyz
    # third row of R, negated (R^T e_z = third row of R as a column)
    return -np.array(
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)]
    )


def heading_rad(quat_wxyz) -> float:
    """Yaw of the trunk (rad): the heading of its x axis in the world's horizontal plane."""
    w, x, y, z = (float(c) for c in quat_wxyz)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def trunk_tilt_rad(quat_wxyz: np.ndarray) -> float:
    """Angle between trunk z and world z: arccos(-g_z), g = gravity in the body frame. The
    quaternion need not be unit. The one tilt used by termination, falls and the e-stop."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    g = projected_gravity(q / np.linalg.norm(q))
    return float(np.arccos(np.clip(-g[2], -1.0, 1.0)))


class ObservationBuilder:
    """Builds the policy observation from a RobotState. Stateless apart from configuration."""

    def __init__(self, spec: RobotSpec, config: ObservationConfig = ObservationConfig(),
                 gait: GaitConfig = GaitConfig()):
        """`gait`: only its clock (frequency) matters here; the action mapper checks the rest."""
        self.spec = spec
        self.config = config
        self.gait = gait
        n = spec.n_joints
        c = config
        self._terms = (
            ("projected_gravity", 3, "1", (1.0,) * 3),
            ("gyro", 3, "rad/s", (c.gyro_scale,) * 3),
            ("joint_pos", n, "rad", (c.joint_pos_scale,) * n),
            ("joint_vel", n, "rad/s", (c.joint_vel_scale,) * n),
            ("last_action", n, "1", (1.0,) * n),
            ("command", 3, "m/s,m/s,rad/s", tuple(c.command_scale)),
        ) + ((("gait_phase", 2, "1", (1.0, 1.0)),) if gait.enabled else ())
        self.size = sum(t[1] for t in self._terms)
        self._scale = np.concatenate([np.asarray(t[3]) for t in self._terms]).astype(np.float32)
        self._default = spec.default_pose_rad

    @property
    def layout(self) -> list[dict]:
        """Names, sizes, units and scales of each slice: what a bundle records. The gait phase
        also records its clock's frequency, so the layout alone rebuilds the builder."""
        out, start = [], 0
        for name, size, unit, scale in self._terms:
            out.append({"name": name, "start": start, "size": size, "unit": unit,
                        "scale": list(scale)})
            start += size
        if self.gait.enabled:
            out[-1]["frequency_hz"] = self.gait.frequency_hz
        hold = self.config.heading_hold
        if hold.enabled:  # (recorded only when on: bundles from before it stay the same)
            command = next(t for t in out if t["name"] == "command")
            command["heading_hold"] = {"gain_per_s": hold.gain_per_s, "cap_rad": hold.cap_rad}
        return out

    @classmethod
    def from_layout(cls, spec: RobotSpec, layout: list[dict]) -> ObservationBuilder:
        """The builder that produces `layout` (as a bundle recorded it) for `spec`; ValueError
        naming the first term this code would build differently."""
        terms = {t.get("name"): t for t in layout if isinstance(t, dict)}
        try:
            config = ObservationConfig(
                gyro_scale=float(terms["gyro"]["scale"][0]),
                joint_pos_scale=float(terms["joint_pos"]["scale"][0]),
                joint_vel_scale=float(terms["joint_vel"]["scale"][0]),
                command_scale=tuple(float(v) for v in terms["command"]["scale"]),
                heading_hold=HeadingHoldConfig(**terms["command"].get("heading_hold", {})))
            frequency = float(terms.get("gait_phase", {}).get("frequency_hz", 0.0))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(f"observation layout: cannot read term settings ({err!r})") from None
        builder = cls(spec, config, GaitConfig(frequency_hz=frequency))
        same_layout("observation", builder.layout, list(layout))
        return builder

    def build(self, state: RobotState, last_action: np.ndarray, command: np.ndarray) -> np.ndarray:
        parts = [
            projected_gravity(state.imu_quat_wxyz),
            state.gyro_rad_s,
            state.joint_pos_rad - self._default,
            state.joint_vel_rad_s,
            last_action,
            command,
        ]
        if self.gait.enabled:
            phase = self.gait.phase_rad(state.time_s)
            parts.append([np.sin(phase), np.cos(phase)])
        raw = np.concatenate(parts)
        return (raw * self._scale).astype(np.float32)


class ActionMapper:
    """Maps a policy action in [-1, 1] to a position JointCommand around the default pose (plus
    the gait pattern at the time of the state the action answers)."""

    def __init__(self, spec: RobotSpec, config: ActionConfig = ActionConfig()):
        config.gait.check(spec)
        self.spec = spec
        self.config = config
        self.size = spec.n_joints

    @property
    def layout(self) -> dict:
        g = self.config.gait
        return {
            "joint_order": list(self.spec.joint_names),
            "default_pose_rad": self.spec.default_pose_rad.tolist(),
            "scale_rad": self.config.scale_rad,
            "clip": [-1.0, 1.0],
            "gait": {"frequency_hz": g.frequency_hz, "phase_offset": list(g.phase_offset),
                     "swing_amplitude_rad": list(g.swing_amplitude_rad),
                     "stride_rad_per_m_s": list(g.stride_rad_per_m_s),
                     # (recorded only when set: bundles from before them stay the same)
                     **{name: list(getattr(g, name)) for name in STRIDES[1:]
                        if getattr(g, name)}},
        }

    @classmethod
    def from_layout(cls, spec: RobotSpec, layout: dict) -> ActionMapper:
        """The mapper that produces `layout` (as a bundle recorded it) for `spec`; ValueError
        naming the first field this code would map differently (joint order first)."""
        order = list(layout.get("joint_order", []))
        if order != list(spec.joint_names):
            diff = [f"{i}: {a} != {b}" for i, (a, b) in
                    enumerate(zip(order, spec.joint_names, strict=False)) if a != b]
            raise ValueError(f"action.joint_order differs from {spec.name}'s (position "
                             f"{', '.join(diff) or 'count'}; recorded {order})")
        try:
            g = layout["gait"]
            gait = GaitConfig(frequency_hz=float(g["frequency_hz"]),
                              phase_offset=tuple(g["phase_offset"]),
                              swing_amplitude_rad=tuple(g["swing_amplitude_rad"]),
                              stride_rad_per_m_s=tuple(g["stride_rad_per_m_s"]),
                              **{name: tuple(g.get(name, ())) for name in STRIDES[1:]})
            mapper = cls(spec, ActionConfig(scale_rad=float(layout["scale_rad"]), gait=gait))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"action layout: cannot rebuild the mapper ({err!r})") from None
        same_layout("action", mapper.layout, dict(layout))
        return mapper

    def targets(self, action: np.ndarray, time_s: float = 0.0, command=None) -> np.ndarray:
        a = np.clip(action, -1.0, 1.0)
        q = self.spec.default_pose_rad + self.config.scale_rad * a
        if self.config.gait.enabled:
            q = q + self.config.gait.offsets_rad(time_s, (0.0, 0.0, 0.0) if command is None
                                                 else command)
        return np.clip(q, self.spec.lower_rad, self.spec.upper_rad)

    def command(self, action: np.ndarray, time_s: float = 0.0, command=None) -> JointCommand:
        """time_s: `RobotState.time_s` of the state the observation was built from; command:
        the velocity command (vx, vy, yaw rate) the observation carried."""
        return JointCommand(position_rad=self.targets(action, time_s, command),
                            mode=CommandMode.POSITION)


def same_layout(what: str, ours, recorded) -> None:
    """ValueError naming the first entry where a rebuilt layout differs from the recorded one."""
    ours = json.loads(json.dumps(ours))
    if isinstance(ours, dict):
        for key in sorted(set(ours) | set(recorded)):
            if ours.get(key) != recorded.get(key):
                raise ValueError(f"{what}.{key} is recorded as {recorded.get(key)!r}; this "
                                 f"gaitforge builds {ours.get(key)!r}")
        return
    for i in range(max(len(ours), len(recorded))):
        a = ours[i] if i < len(ours) else None
        b = recorded[i] if i < len(recorded) else None
        if a != b:
            name = (b or a or {}).get("name", i)
            raise ValueError(f"{what} term '{name}' is recorded as {b!r}; this gaitforge "
                             f"builds {a!r}")


def limit_targets(target: np.ndarray, previous: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray, max_step_rad: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the deploy-time safety layer lets a position target be, one tick after `previous`:
    clamped into [lower, upper] (the joint limits minus its margin), then moved at most
    `max_step_rad` from `previous`. Returns (sent, clamped joints, rate-limited joints).
    `previous` lies inside the box, so the result satisfies both. The safety layer and the
    training env's action path both call this: training sees what deployment enforces."""
    clamped = np.clip(target, lower, upper)
    delta = clamped - previous
    # 1e-12 slack: float residue of repeated steps is not worth counting as a limit
    limited = np.abs(delta) > max_step_rad + 1e-12
    sent = np.where(limited, previous + np.sign(delta) * max_step_rad, clamped)
    return sent, clamped != target, limited
