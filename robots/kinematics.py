"""Leg kinematics from the robot's own description (its URDF), in NumPy: where each foot is in
the trunk frame and how it moves with the spec's joint angles. No engine, so the robot
computer runs the same code as the simulation.

    legs = load_leg_kinematics(spec)          # parse spec.description_path once
    p, jac = legs.forward(q)                  # (n_feet, 3) m, (n_feet, 3, n_joints) m/rad
    p, v_rel = legs.foot_motion(q, dq)        # v_rel = jac @ dq (n_feet, 3) m/s, cheaper

"Trunk frame" is the frame of the spec's `base_link` (the URDF root link); a foot's position
is the origin of its link moved by the spec's `foot_offset_m` (for the 12-joint robots here,
no offset: the centre of the foot's collision sphere; for Minitaur the toe at the end of a
lower leg). Each foot's chain runs from the trunk through the joints the URDF lists (origin
xyz / rpy, axis; `fixed` joints folded into their neighbours) to the foot link. Revolute and
continuous joints must be spec joints (their angle is `q[i]` in the spec's canonical order) or
passive joints of a closed chain (their angle is the one that closes it, robots/closure.py);
a prismatic or floating joint on a leg is refused. URDF conventions: rpy is roll about x, then pitch
about y, then yaw about z, all about fixed axes (R = Rz(yaw) Ry(pitch) Rx(roll)); a joint
turns its child about `axis` (default 1 0 0) given in the joint frame.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from .spec import RobotSpec

_MOVING = ("revolute", "continuous")


def rpy_matrix(rpy) -> np.ndarray:
    """URDF rotation of (roll, pitch, yaw), rad: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def quat_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrix R (body -> world) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(c) for c in q_wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


_LEVI_CIVITA = np.zeros((3, 3, 3))
_LEVI_CIVITA[0, 1, 2] = _LEVI_CIVITA[1, 2, 0] = _LEVI_CIVITA[2, 0, 1] = 1.0
_LEVI_CIVITA[0, 2, 1] = _LEVI_CIVITA[2, 1, 0] = _LEVI_CIVITA[1, 0, 2] = -1.0


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis: np.cross, in one einsum (np.cross costs ~5x more on the
    small arrays of a control tick)."""
    return np.einsum("ijk,...j,...k->...i", _LEVI_CIVITA, a, b)


def _cross_matrix(v: np.ndarray) -> np.ndarray:
    """[v]x: the matrix with [v]x w = v x w."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


@dataclass(frozen=True)
class _Joint:
    name: str
    kind: str
    parent: str
    child: str
    rot: np.ndarray  # (3, 3) origin rotation, parent link frame -> joint frame
    pos: np.ndarray  # (3,) origin position in the parent link frame, m
    axis: np.ndarray  # (3,) unit axis in the joint frame


def _vector(text: str | None, default) -> np.ndarray:
    return np.array([float(v) for v in text.split()] if text else default, dtype=np.float64)


def parse_urdf_joints(root: ET.Element) -> dict[str, _Joint]:
    """Child link name -> the joint that carries it, for every joint of a parsed URDF."""
    out = {}
    for j in root.findall("joint"):
        origin = j.find("origin")
        axis_el = j.find("axis")
        axis = _vector(None if axis_el is None else axis_el.get("xyz"), (1.0, 0.0, 0.0))
        norm = np.linalg.norm(axis)
        child = j.find("child").get("link")
        out[child] = _Joint(
            name=j.get("name"), kind=j.get("type"), parent=j.find("parent").get("link"),
            child=child,
            rot=rpy_matrix(_vector(None if origin is None else origin.get("rpy"), (0, 0, 0))),
            pos=_vector(None if origin is None else origin.get("xyz"), (0, 0, 0)),
            axis=axis / norm if norm > 0 else axis)
    return out


class PointChains:
    """Positions, joint axes and joint origins of points on links (each in its link's frame), in
    the trunk frame, vectorised over the points. Column `index[name]` of the angle vector turns
    joint `name`. Chains shorter than the longest are padded with joints that never move."""

    def __init__(self, spec: RobotSpec, joints: dict[str, _Joint], ends, index: dict[str, int],
                 kind: str = "foot"):
        self.spec, self.kind = spec, kind
        chains = [self._chain(link, joints, index) for link, _ in ends]
        n_ends, depth = len(chains), max(len(c[0]) for c in chains)
        # Joint k of chain f, as a homogeneous transform from the previous joint's child frame
        # (the trunk for k = 0) at angle a: [[O R(a), o], [0, 1]] with O, o the (folded)
        # origin and R(a) = I + sin(a) K + (1 - cos(a)) K^2 (Rodrigues, K = [axis]x), kept as
        # three constant parts: H(a) = fixed + sin(a) sin_part + (1 - cos(a)) cos_part.
        self.fixed = np.tile(np.eye(4), (n_ends, depth, 1, 1))  # (F, K, 4, 4)
        self.sin_part = np.zeros((n_ends, depth, 4, 4))
        self.cos_part = np.zeros((n_ends, depth, 4, 4))
        self.axis = np.tile([1.0, 0.0, 0.0], (n_ends, depth, 1))  # (F, K, 3) joint frame
        self.joint_index = np.zeros((n_ends, depth), dtype=np.int64)  # (F, K) into q
        self.mask = np.zeros((n_ends, depth))  # (F, K) 1 for a real joint, 0 for padding
        self.tip = np.ones((n_ends, 4))  # (F, 4) the point in the last child frame, m
        for f, ((moving, (tip_rot, tip_pos)), (_, point)) in enumerate(zip(chains, ends,
                                                                           strict=True)):
            for k, (rot, pos, axis, i) in enumerate(moving):
                k_axis = _cross_matrix(axis)
                self.fixed[f, k, :3, :3], self.fixed[f, k, :3, 3] = rot, pos
                self.sin_part[f, k, :3, :3] = rot @ k_axis
                self.cos_part[f, k, :3, :3] = rot @ k_axis @ k_axis
                self.axis[f, k], self.joint_index[f, k], self.mask[f, k] = axis, i, 1.0
            self.tip[f, :3] = tip_pos + tip_rot @ np.asarray(point, dtype=np.float64)
        # per point: the angle columns that move it, trunk first
        self.chain_columns = tuple(tuple(m[3] for m in moving) for moving, _ in chains)

    def _chain(self, end: str, joints: dict[str, _Joint], index: dict[str, int]):
        """([(origin rot, origin pos, axis, column)] trunk -> end, (tip rot, tip pos))
        with fixed joints folded into the next moving joint's origin (or into the tip)."""
        path, link = [], end
        while link != self.spec.base_link:
            joint = joints.get(link)
            if joint is None:
                raise ValueError(f"{self.spec.description_path}: {self.kind} '{end}' is not "
                                 f"connected to the base link '{self.spec.base_link}'")
            path.append(joint)
            link = joint.parent
        moving, rot, pos = [], np.eye(3), np.zeros(3)  # pending fixed transform
        where = f"on the leg of '{end}'" if self.kind == "foot" else f"above '{end}'"
        for joint in reversed(path):
            pos, rot = pos + rot @ joint.pos, rot @ joint.rot
            if joint.kind == "fixed":
                continue
            if joint.kind not in _MOVING:
                raise ValueError(f"{self.spec.description_path}: joint '{joint.name}' {where} "
                                 f"is {joint.kind}; only revolute and continuous joints are "
                                 "supported")
            if joint.name not in index:
                raise ValueError(f"{self.spec.description_path}: joint '{joint.name}' {where} "
                                 f"is not a joint of the spec {self.spec.name} (nor one of its "
                                 "passive_joints)")
            moving.append((rot, pos, joint.axis, index[joint.name]))
            rot, pos = np.eye(3), np.zeros(3)
        return moving, (rot, pos)

    def frames(self, q: np.ndarray):
        """(points (F, 3), joint axes (F, K, 3) and joint origins (F, K, 3) in the trunk
        frame) at angles q."""
        angles = np.asarray(q, dtype=np.float64)[self.joint_index] * self.mask
        s, c = np.sin(angles)[..., None, None], np.cos(angles)[..., None, None]
        steps = self.fixed + s * self.sin_part + (1.0 - c) * self.cos_part  # (F, K, 4, 4)
        frames = np.empty_like(steps)  # each joint's child frame in the trunk frame
        frames[:, 0] = steps[:, 0]
        for k in range(1, steps.shape[1]):
            frames[:, k] = frames[:, k - 1] @ steps[:, k]
        points = np.einsum("fij,fj->fi", frames[:, -1, :3], self.tip)
        axes = np.einsum("fkij,fkj->fki", frames[..., :3, :3], self.axis)
        return points, axes, frames[..., :3, 3]

    def columns(self, q):
        """(points (F, 3), Jacobian columns (F, K, 3) m/rad) at q; padding columns are zero."""
        points, axes, origins = self.frames(q)
        return points, cross(axes * self.mask[..., None], points[:, None, :] - origins)

    def jacobian(self, q, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
        """(points (F, 3), d point / d q (F, 3, n_columns) m/rad)."""
        points, cols = self.columns(q)
        jac = np.zeros((len(points), 3, n_columns))
        for f in range(len(points)):
            np.add.at(jac[f].T, self.joint_index[f], cols[f])
        return points, jac


class LegKinematics:
    """Feet positions and Jacobians in the trunk frame, vectorised over the feet (see the
    module docstring). A foot is its link's origin moved by the spec's `foot_offset_m`. On a
    closed-chain leg (spec `closed_chains`), passive joints on the foot's chain take the angles
    that close the chains (robots/closure.py), and the Jacobian folds their dependence on the
    driven joints in: J = J_q + J_p dp/dq.
    """

    def __init__(self, spec: RobotSpec, urdf: ET.Element):
        from .closure import Closure  # closure.py builds on this module's PointChains

        self.spec = spec
        self.feet = spec.feet
        n = spec.n_joints
        index = {name: i for i, name in enumerate(spec.joint_names)}
        index.update({j.name: n + k for k, j in enumerate(spec.passive_joints)})
        self.closure = Closure(spec, urdf) if spec.closed_chains else None
        self.chains = PointChains(spec, parse_urdf_joints(urdf),
                                  [(foot, spec.foot_offset_m) for foot in spec.feet], index)
        self.n_columns = n + len(spec.passive_joints)
        # per foot: the spec joint indices that move it, trunk first (the last one: its knee);
        # on a closed-chain leg, then the driven joints that turn its passive joints
        legs = []
        for columns in self.chains.chain_columns:
            leg = [c for c in columns if c < n]
            for c in columns:
                if c >= n and self.closure is not None:
                    leg += [i for i in self.closure.driven_by(c - n) if i not in leg]
            legs.append(tuple(leg))
        self.leg_joints = tuple(legs)

    def _angles(self, q) -> tuple[np.ndarray, np.ndarray | None]:
        """(angles over every column, d passive / d q or None) at driven angles q."""
        q = np.asarray(q, dtype=np.float64)
        if self.closure is None:
            return q, None
        passive = self.closure.solve(q)
        return np.concatenate([q, passive]), self.closure.sensitivity(q, passive)

    def foot_positions(self, q) -> np.ndarray:
        """(n_feet, 3) feet in the trunk frame, m, at joint angles q (rad)."""
        return self.chains.frames(self._angles(q)[0])[0]

    def forward(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(positions (n_feet, 3) m, Jacobians (n_feet, 3, n_joints) m/rad): d p_f / d q in
        the trunk frame, zero for the joints of other legs."""
        angles, dp_dq = self._angles(q)
        feet, jac = self.chains.jacobian(angles, self.n_columns)
        n = self.spec.n_joints
        if dp_dq is None:
            return feet, jac
        return feet, jac[..., :n] + jac[..., n:] @ dp_dq

    def foot_motion(self, q, dq) -> tuple[np.ndarray, np.ndarray]:
        """(positions (n_feet, 3) m, velocities relative to the trunk (n_feet, 3) m/s =
        J(q) dq), trunk frame, at joint angles q (rad) and rates dq (rad/s)."""
        angles, dp_dq = self._angles(q)
        rates = np.asarray(dq, dtype=np.float64)
        if dp_dq is not None:
            rates = np.concatenate([rates, dp_dq @ rates])
        chains = self.chains
        feet, axes, origins = chains.frames(angles)
        rates = rates[chains.joint_index] * chains.mask  # (F, K)
        # sum over the chain of (axis_k dq_k) x (p - o_k), in one contraction
        rel = np.einsum("ijk,fn,fnj,fnk->fi", _LEVI_CIVITA, rates, axes,
                        feet[:, None, :] - origins)
        return feet, rel


def load_leg_kinematics(spec: RobotSpec) -> LegKinematics:
    """The leg kinematics of `spec`, parsed from its description file."""
    return LegKinematics(spec, ET.parse(spec.description_path).getroot())
