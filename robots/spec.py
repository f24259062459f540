"""RobotSpec: one robot's joints, limits, default pose, gains and feet, loaded from robots/<name>/.

One spec per robot, used by simulation and hardware alike. Each robot folder holds `spec.yaml`
and, for our own robots, the description (URDF) that both engines load.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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
    def sha256(self) -> str:
        """Hash of every spec field and the description file's bytes: a robot's identity."""
        fields = to_dict(self)
        fields.pop("folder")
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
        digest.update(self.description_path.read_bytes())
        return digest.hexdigest()


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
    return spec
