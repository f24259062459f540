"""The dynamics of a simulated robot: one parameter schema for randomisation, the virtual robot,
system identification, deployment in simulation and training.

A dynamics file is a flat YAML mapping from the names below to a scalar, or (where the table
says so) a list with one value per joint in the spec's joint order:

    name                         unit        range                        per joint
    latency_s                    s           0 .. 0.1                     no
    kp_scale                     1           0.1 .. 10                    yes
    kd_scale                     1           0.1 .. 10                    yes
    motor_strength               1           0.1 .. 3                     yes
    joint_friction_nm            N m         0 .. 5                       yes
    joint_damping_nm_s_per_rad   N m s/rad   0 .. 5                       yes
    armature_kg_m2               kg m^2      0 .. 0.5                     yes
    trunk_mass_delta_kg          kg          -0.5 .. +1 x nominal mass    no
    foot_friction                1           0.05 .. 3                    no

Meaning, per physics step (see sim/actuator.py): the servo's P and D gains are
`motor_strength * kp_scale * kp` and `motor_strength * kd_scale * kd`, its torque limit
`motor_strength * torque_limit`; a command takes effect `latency_s` after it is written,
rounded to whole physics steps; each joint also feels Coulomb friction
`joint_friction_nm` against its motion and viscous damping `joint_damping_nm_s_per_rad`; its
rotor adds `armature_kg_m2` of inertia about the joint axis (default: the spec's armature);
the trunk weighs `trunk_mass_delta_kg` more than nominal; `foot_friction` is the ground's
friction coefficient. A missing name takes its nominal value. The optional key `provenance`
(a mapping: where the file came from, e.g. the logs system identification fitted and their
sha256) is kept and never interpreted. Unknown names, wrong list lengths and out-of-range
values are refused naming the field and the range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from gaitforge.robots.configio import ConfigError, load_yaml
from gaitforge.robots.spec import RobotSpec

Value = float | tuple[float, ...]


@dataclass(frozen=True)
class Param:
    unit: str
    low: float
    high: float
    per_joint: bool
    doc: str


SCHEMA: dict[str, Param] = {
    "latency_s": Param("s", 0.0, 0.1, False, "command latency"),
    "kp_scale": Param("1", 0.1, 10.0, True, "servo P gain scale"),
    "kd_scale": Param("1", 0.1, 10.0, True, "servo D gain scale"),
    "motor_strength": Param("1", 0.1, 3.0, True, "gains and torque limit scale"),
    "joint_friction_nm": Param("N m", 0.0, 5.0, True, "Coulomb joint friction"),
    "joint_damping_nm_s_per_rad": Param("N m s/rad", 0.0, 5.0, True, "viscous joint damping"),
    "armature_kg_m2": Param("kg m^2", 0.0, 0.5, True, "rotor inertia about the joint axis"),
    "trunk_mass_delta_kg": Param("kg", -math.inf, math.inf, False, "added trunk mass"),
    "foot_friction": Param("1", 0.05, 3.0, False, "ground friction coefficient"),
}
PROVENANCE = "provenance"


@dataclass(frozen=True)
class DynamicsParams:
    """One robot's dynamics (the schema above); per-joint fields are a scalar or a tuple in the
    spec's joint order. `armature_kg_m2` None means the spec's. `com_offset_m` (trunk centre of
    mass shift, world axes at rest) is for randomisation only and is not part of a file."""

    latency_s: float = 0.0
    kp_scale: Value = 1.0
    kd_scale: Value = 1.0
    motor_strength: Value = 1.0
    joint_friction_nm: Value = 0.0
    joint_damping_nm_s_per_rad: Value = 0.0
    armature_kg_m2: Value | None = None
    trunk_mass_delta_kg: float = 0.0
    foot_friction: float = 1.0
    com_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def joint_values(self, name: str, spec: RobotSpec) -> np.ndarray:
        """Field `name` as an (n_joints,) float array (the spec's armature where None)."""
        value = getattr(self, name)
        if value is None and name == "armature_kg_m2":
            return spec.armature_kg_m2.copy()
        return np.broadcast_to(np.asarray(value, np.float64), (spec.n_joints,)).copy()

    def to_file_dict(self) -> dict:
        """The file mapping: every schema field, lists for per-joint tuples."""
        out = {}
        for name in SCHEMA:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else float(value)
        return out


def check_params(params: DynamicsParams, spec: RobotSpec, source: str = "dynamics") -> None:
    """ConfigError naming the field and its range for a value out of range or a list whose
    length is not the spec's joint count."""
    for name, p in SCHEMA.items():
        value = getattr(params, name)
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not p.per_joint:
            raise ConfigError(f"{source}: '{name}' must be a single number, got a list")
        if isinstance(value, tuple) and len(value) != spec.n_joints:
            raise ConfigError(f"{source}: '{name}' must be a number or a list of "
                              f"{spec.n_joints} values (one per joint of {spec.name}, in the "
                              f"spec's order), got {len(value)} values")
        low, high = _range(name, p, spec)
        for i, v in enumerate(values):
            if not (math.isfinite(v) and low <= v <= high):
                where = f"[{i}] ({spec.joint_names[i]})" if isinstance(value, tuple) else ""
                raise ConfigError(f"{source}: '{name}'{where} = {v!r} is outside its range "
                                  f"{low:g} .. {high:g} {p.unit}")


def _range(name: str, p: Param, spec: RobotSpec) -> tuple[float, float]:
    if name == "trunk_mass_delta_kg":
        return -0.5 * spec.nominal_mass_kg, spec.nominal_mass_kg
    return p.low, p.high


def from_mapping(data: dict, spec: RobotSpec, source: str = "dynamics") -> DynamicsParams:
    """DynamicsParams from a file's mapping (the `provenance` key is ignored)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a dynamics file is a mapping of names to values")
    unknown = sorted(set(data) - set(SCHEMA) - {PROVENANCE})
    if unknown:
        raise ConfigError(f"{source}: unknown dynamics parameter '{unknown[0]}' (known: "
                          f"{', '.join(SCHEMA)})")
    kwargs = {}
    for name, value in data.items():
        if name == PROVENANCE:
            continue
        if isinstance(value, list | tuple):
            if not all(_is_number(v) for v in value):
                raise ConfigError(f"{source}: '{name}' must hold numbers, got {value!r}")
            kwargs[name] = tuple(float(v) for v in value)
        elif _is_number(value):
            kwargs[name] = float(value)
        else:
            raise ConfigError(f"{source}: '{name}' must be a number or a list, got {value!r}")
    params = DynamicsParams(**kwargs)
    check_params(params, spec, source)
    return params


def nominal_dynamics(spec: RobotSpec, sim, values: dict | None = None,
                     source: str = "env.dynamics") -> DynamicsParams:
    """A body's nominal dynamics: the SimConfig's ground friction and latency, then `values`
    (a dynamics file's mapping) on top. Randomisation is centred on this."""
    base = {"foot_friction": sim.terrain.friction, "latency_s": sim.actuator.latency_s}
    return from_mapping({**base, **(values or {})}, spec, source=source)


def load_dynamics(path: str | Path, spec: RobotSpec) -> DynamicsParams:
    """Read and check a dynamics file for `spec`."""
    return from_mapping(load_yaml(path), spec, source=str(path))


def read_provenance(path: str | Path) -> dict:
    """A dynamics file's provenance; {} when it has none (or something else in its place)."""
    provenance = load_yaml(path).get(PROVENANCE)
    return provenance if isinstance(provenance, dict) else {}


def save_dynamics(path: str | Path, params: DynamicsParams, provenance: dict | None = None
                  ) -> None:
    """Write a dynamics file (atomically): every schema field, then `provenance`."""
    from gaitforge.control.files import write_atomic

    data = params.to_file_dict()
    if provenance:
        data[PROVENANCE] = provenance
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def replace(params: DynamicsParams, **changes) -> DynamicsParams:
    return dataclasses.replace(params, **changes)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
