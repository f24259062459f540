"""RobotSpec: one robot's joints, limits, default pose, gains and feet, loaded from robots/<name>/.

One spec per robot, used by simulation and hardware alike. Each robot folder holds `spec.yaml`
and, for our own robots, the description (URDF) that both engines load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from .configio import ConfigError, from_dict, load_yaml, to_dict

ROBOTS_DIR = Path(__file__).resolve().parent
PYBULLET_DATA_PREFIX = "pybullet_data://"


@dataclass(frozen=True)
class JointSpec:
    name: str  # joint name in the description file
    lower_rad: float
    upper_rad: float
    velocity_limit_rad_s: float  # no-load speed
    torque_limit_nm: float  # stall / peak torque
    default_rad: float  # standing pose
    kp_nm_per_rad: float
    kd_nm_s_per_rad: float
    armature_kg_m2: float = 0.0  # reflected rotor inertia about the joint axis

    def __post_init__(self):
        if not self.lower_rad < self.upper_rad:
            raise ValueError(f"joint '{self.name}': lower_rad must be < upper_rad")
        if not self.lower_rad <= self.default_rad <= self.upper_rad:
            raise ValueError(f"joint '{self.name}': default_rad {self.default_rad} outside limits")
        for field in ("velocity_limit_rad_s", "torque_limit_nm", "kp_nm_per_rad"):
            if not getattr(self, field) > 0:
                raise ValueError(f"joint '{self.name}': {field} must be > 0")
        for field in ("kd_nm_s_per_rad", "armature_kg_m2"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"joint '{self.name}': {field} must be >= 0")


@dataclass(frozen=True)
class PassiveJointSpec:
    """A description joint the spec does not drive (a knee of a closed-chain leg): free in
    both engines. Its standing angle starts the closed-chain solver (robots/closure.py)."""

    name: str  # joint name in the description file
    default_rad: float  # angle in the standing pose (the spec's default pose)


@dataclass(frozen=True)
class ClosedChainSpec:
    """A loop the description's tree leaves open: point_a on link_a and point_b on link_b (each
    in its link's frame, m) are one point on the real robot. Both engines hold them together
    (PyBullet: a point-to-point constraint; MuJoCo: an equality connect), and ground contacts
    of link_b are reported as link_a's (they meet there: a five-bar leg's two shins)."""

    link_a: str
    link_b: str
    point_a: tuple[float, float, float]
    point_b: tuple[float, float, float]

    def __post_init__(self):
        if self.link_a == self.link_b:
            raise ValueError(f"link_a and link_b are both '{self.link_a}'")


@dataclass(frozen=True)
class ServoModelSpec:
    """The servo model of sim/actuator.py: PD at sim_dt from the joints' gains, clipped to the
    torque limit and the linear torque-speed envelope."""

    name: Literal["servo"] = "servo"


@dataclass(frozen=True, kw_only=True)
class DCMotorSpec:
    """A DC motor behind a PWM driver (Tan et al. 2018, "Sim-to-Real: Learning Agile
    Locomotion For Quadruped Robots"), see sim/actuator.py. Units: V, ohm, N m/A, V s/rad, A,
    N m. The torque-current curve is (current_a[i], torque_nm[i]), current rising from 0."""

    name: Literal["dc_motor"] = "dc_motor"
    battery_voltage_v: float  # the driver's supply: the voltage at full duty
    resistance_ohm: float  # winding resistance
    torque_constant_nm_per_a: float  # also the back-EMF constant, V s/rad
    viscous_damping_v_s_per_rad: float = 0.0  # added to the back-EMF constant (friction)
    voltage_clip_v: float = 50.0  # net winding voltage clipped by the driver's diodes
    current_a: tuple[float, ...]
    torque_nm: tuple[float, ...]

    def __post_init__(self):
        for name in ("battery_voltage_v", "resistance_ohm", "torque_constant_nm_per_a",
                     "voltage_clip_v"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.viscous_damping_v_s_per_rad < 0:
            raise ValueError("viscous_damping_v_s_per_rad must be >= 0")
        if len(self.current_a) != len(self.torque_nm) or len(self.current_a) < 2:
            raise ValueError("current_a and torque_nm must be lists of the "
                             "same length (>= 2): the torque-current curve")
        if self.current_a[0] != 0 or any(b <= a for a, b in zip(self.current_a[:-1],
                                                                self.current_a[1:], strict=True)):
            raise ValueError("current_a must start at 0 and rise strictly")
        if self.torque_nm[0] != 0 or any(b < a for a, b in zip(self.torque_nm[:-1],
                                                               self.torque_nm[1:], strict=True)):
            raise ValueError("torque_nm must start at 0 and never fall")

    @property
    def full_duty_stall_torque_nm(self) -> float:
        """K_t V / R: the torque full duty gives at rest, by the torque constant alone (the
        curve may give less). The PD's torque demand is divided by it to give the duty."""
        return self.torque_constant_nm_per_a * self.battery_voltage_v / self.resistance_ohm


class _JointArray:
    """A RobotSpec attribute: one JointSpec field over all joints, as a read-only float64
    array in canonical joint order, built once per spec."""

    def __init__(self, field: str):
        self.field = field

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, spec, owner=None) -> np.ndarray:
        if spec is None:
            return self
        cached = spec.__dict__.get(self.name)
        if cached is None:
            cached = np.array([getattr(j, self.field) for j in spec.joints], dtype=np.float64)
            cached.flags.writeable = False
            spec.__dict__[self.name] = cached  # frozen dataclass: bypass __setattr__
        return cached


@dataclass(frozen=True)
class RobotSpec:
    name: str
    description: str  # URDF file: relative to the robot folder, or pybullet_data://<path>
    base_link: str  # trunk link name in the description
    feet: tuple[str, ...]  # foot link names (contact points)
    nominal_mass_kg: float
    standing_height_m: float  # trunk height in the default pose, for spawning and checks
    joints: tuple[JointSpec, ...]
    folder: str = ""  # filled by the loader
    # Optional, for robots whose legs are closed chains or whose motors are DC motors (the
    # identity hash leaves these out while they hold their defaults):
    foot_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)  # contact point, foot frame
    # links other than the feet whose touching the ground is no collision (a shank whose mesh
    # reaches the foot's bottom: the `collision` reward term and the logs leave them out)
    ground_contact_links: tuple[str, ...] = ()
    passive_joints: tuple[PassiveJointSpec, ...] = ()
    closed_chains: tuple[ClosedChainSpec, ...] = ()
    # link inertias: the description's, or computed from each link's collision shapes and its
    # mass about its centre of mass (robots/inertia.py; for placeholder inertias)
    inertia_from: Literal["description", "collision"] = "description"
    actuator: ServoModelSpec | DCMotorSpec = dataclasses.field(default_factory=ServoModelSpec)

    def __post_init__(self):
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ValueError("joints: duplicate joint name")
        if not self.joints:
            raise ValueError("joints: at least one joint is required")
        if not self.feet:
            raise ValueError("feet: at least one foot link is required")
        if self.nominal_mass_kg <= 0 or self.standing_height_m <= 0:
            raise ValueError("nominal_mass_kg and standing_height_m must be > 0")
        passive = [j.name for j in self.passive_joints]
        both = sorted(set(passive) & set(names))
        if both or len(set(passive)) != len(passive):
            raise ValueError(f"passive_joints: '{(both or passive)[0]}' is listed twice or is "
                             "also a driven joint")

    # Arrays in canonical joint order -------------------------------------------------------
    @property
    def n_joints(self) -> int:
        return len(self.joints)

    @cached_property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    # Per-joint arrays (read-only, float64, canonical joint order), one per JointSpec field:
    lower_rad = _JointArray("lower_rad")
    upper_rad = _JointArray("upper_rad")
    default_pose_rad = _JointArray("default_rad")
    kp = _JointArray("kp_nm_per_rad")
    kd = _JointArray("kd_nm_s_per_rad")
    torque_limit_nm = _JointArray("torque_limit_nm")
    velocity_limit_rad_s = _JointArray("velocity_limit_rad_s")
    armature_kg_m2 = _JointArray("armature_kg_m2")

    # Files and identity --------------------------------------------------------------------
    @cached_property
    def description_path(self) -> Path:
        if self.description.startswith(PYBULLET_DATA_PREFIX):
            import pybullet_data  # data-only package, no engine import

            path = Path(pybullet_data.getDataPath()) / self.description[len(PYBULLET_DATA_PREFIX):]
        else:
            path = Path(self.folder) / self.description
        return path

    @cached_property
    def passive_default_rad(self) -> np.ndarray:
        """Standing angles of the passive joints, in `passive_joints` order (read-only)."""
        out = np.array([j.default_rad for j in self.passive_joints], dtype=np.float64)
        out.flags.writeable = False
        return out

    @cached_property
    def sha256(self) -> str:
        """Hash of every spec field and the description file's bytes: a robot's identity.
        Optional fields at their defaults are left out, so adding one keeps the identity of
        the robots that do not use it."""
        fields = to_dict(self)
        fields.pop("folder")
        for name in _OPTIONAL_FIELDS:
            if fields[name] == to_dict(_FIELD_DEFAULTS[name]):
                fields.pop(name)
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
        digest.update(self.description_path.read_bytes())
        return digest.hexdigest()


_OPTIONAL_FIELDS = ("foot_offset_m", "ground_contact_links", "passive_joints", "closed_chains",
                    "inertia_from", "actuator")
_FIELD_DEFAULTS = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                            else f.default)
                   for f in dataclasses.fields(RobotSpec) if f.name in _OPTIONAL_FIELDS}


def available_robots() -> list[str]:
    return sorted(p.parent.name for p in ROBOTS_DIR.glob("*/spec.yaml"))


def load_robot_spec(name_or_path: str | Path) -> RobotSpec:
    """Load a robot by registered name (`servo_dog`) or by the path of a spec.yaml."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = ROBOTS_DIR / str(name_or_path) / "spec.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown robot '{name_or_path}' (known: {', '.join(available_robots())})"
            )
    data = load_yaml(path)
    data.pop("folder", None)
    # Top-level `x-...` keys only hold YAML anchors (shared joint settings); drop them.
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    spec = from_dict(RobotSpec, {**data, "folder": str(path.parent.resolve())}, source=str(path))
    if not spec.description_path.is_file():
        raise ConfigError(
            f"{path}: 'description' file not found: {spec.description_path}"
        )
    for j in spec.joints:
        if not all(math.isfinite(v) for v in (j.lower_rad, j.upper_rad, j.default_rad)):
            raise ConfigError(f"{path}: joint '{j.name}' has a non-finite angle")
    if spec.passive_joints or spec.closed_chains or spec.ground_contact_links:
        _check_link_names(spec, path)
    return spec


def _check_link_names(spec: RobotSpec, path: Path) -> None:
    """ConfigError naming the field when a passive joint, a closed chain's link or a ground
    contact link is not in the description (or a passive joint cannot turn)."""
    root = ET.parse(spec.description_path).getroot()
    links = {link.get("name") for link in root.findall("link")}
    kinds = {j.get("name"): j.get("type") for j in root.findall("joint")}
    for i, joint in enumerate(spec.passive_joints):
        if kinds.get(joint.name) not in ("revolute", "continuous"):
            raise ConfigError(f"{path}: 'passive_joints[{i}].name': '{joint.name}' is not a "
                              f"revolute or continuous joint of {spec.description_path.name}")
    for i, chain in enumerate(spec.closed_chains):
        for side in ("link_a", "link_b"):
            if getattr(chain, side) not in links:
                raise ConfigError(f"{path}: 'closed_chains[{i}].{side}': link "
                                  f"'{getattr(chain, side)}' is not in "
                                  f"{spec.description_path.name}")
    for i, link in enumerate(spec.ground_contact_links):
        if link not in links or link in spec.feet:
            raise ConfigError(f"{path}: 'ground_contact_links[{i}]': '{link}' is "
                              + ("a foot" if link in spec.feet else
                                 f"not a link of {spec.description_path.name}"))
