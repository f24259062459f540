"""Leg kinematics from the robot's own description (its URDF), in NumPy: where each foot is in
the trunk frame and how it moves with the spec's joint angles. No engine, so the robot
computer runs the same code as the simulation.

    legs = load_leg_kinematics(spec)          # parse spec.description_path once
    p, jac = legs.forward(q)                  # (n_feet, 3) m, (n_feet, 3, n_joints) m/rad
    p, v_rel = legs.foot_motion(q, dq)        # v_rel = jac @ dq (n_feet, 3) m/s, cheaper

"Trunk frame" is the frame of the spec's `base_link` (the URDF root link); a foot's position
is the origin of its link (for the robots here, the centre of the foot's collision sphere).
Each foot's chain runs from the trunk through the joints the URDF lists (origin xyz / rpy,
axis; `fixed` joints folded into their neighbours) to the foot link. Revolute and continuous
joints must be spec joints (their angle is `q[i]` in the spec's canonical order); a prismatic
or floating joint on a leg is refused. URDF conventions: rpy is roll about x, then pitch
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


class LegKinematics:
    """Feet positions and Jacobians in the trunk frame, vectorised over the feet (see the
    module docstring). Chains shorter than the longest are padded with joints that never move.
    """

    def __init__(self, spec: RobotSpec, urdf: ET.Element):
        self.spec = spec
        joints = parse_urdf_joints(urdf)
        self.feet = spec.feet
        index = {name: i for i, name in enumerate(spec.joint_names)}
        chains = [self._chain(foot, joints, index) for foot in spec.feet]
        n_feet, depth = len(chains), max(len(c[0]) for c in chains)
        # Joint k of foot f, as a homogeneous transform from the previous joint's child frame
        # (the trunk for k = 0) at angle a: [[O R(a), o], [0, 1]] with O, o the (folded)
        # origin and R(a) = I + sin(a) K + (1 - cos(a)) K^2 (Rodrigues, K = [axis]x), kept as
        # three constant parts: H(a) = fixed + sin(a) sin_part + (1 - cos(a)) cos_part.
        self.fixed = np.tile(np.eye(4), (n_feet, depth, 1, 1))  # (F, K, 4, 4)
        self.sin_part = np.zeros((n_feet, depth, 4, 4))
        self.cos_part = np.zeros((n_feet, depth, 4, 4))
        self.axis = np.tile([1.0, 0.0, 0.0], (n_feet, depth, 1))  # (F, K, 3) joint frame
        self.joint_index = np.zeros((n_feet, depth), dtype=np.int64)  # (F, K) into q
        self.mask = np.zeros((n_feet, depth))  # (F, K) 1 for a real joint, 0 for padding
        self.tip = np.ones((n_feet, 4))  # (F, 4) foot origin in the last child frame, m
        for f, (moving, (_, tip_pos)) in enumerate(chains):
            for k, (rot, pos, axis, i) in enumerate(moving):
                k_axis = _cross_matrix(axis)
                self.fixed[f, k, :3, :3], self.fixed[f, k, :3, 3] = rot, pos
                self.sin_part[f, k, :3, :3] = rot @ k_axis
                self.cos_part[f, k, :3, :3] = rot @ k_axis @ k_axis
                self.axis[f, k], self.joint_index[f, k], self.mask[f, k] = axis, i, 1.0
            self.tip[f, :3] = tip_pos
        # per foot: the spec joint indices that move it, trunk first (the last one: its knee)
        self.leg_joints = tuple(tuple(m[3] for m in moving) for moving, _ in chains)

    def _chain(self, foot: str, joints: dict[str, _Joint], index: dict[str, int]):
        """([(origin rot, origin pos, axis, joint index)] trunk -> foot, (tip rot, tip pos))
        with fixed joints folded into the next moving joint's origin (or into the tip)."""
        path, link = [], foot
        while link != self.spec.base_link:
            joint = joints.get(link)
            if joint is None:
                raise ValueError(f"{self.spec.description_path}: foot '{foot}' is not "
                                 f"connected to the base link '{self.spec.base_link}'")
            path.append(joint)
            link = joint.parent
        moving, rot, pos = [], np.eye(3), np.zeros(3)  # pending fixed transform
        for joint in reversed(path):
            pos, rot = pos + rot @ joint.pos, rot @ joint.rot
            if joint.kind == "fixed":
                continue
            if joint.kind not in _MOVING:
                raise ValueError(f"{self.spec.description_path}: joint '{joint.name}' on the "
                                 f"leg of '{foot}' is {joint.kind}; only revolute and "
                                 "continuous joints are supported")
            if joint.name not in index:
                raise ValueError(f"{self.spec.description_path}: joint '{joint.name}' on the "
                                 f"leg of '{foot}' is not a joint of the spec {self.spec.name}")
            moving.append((rot, pos, joint.axis, index[joint.name]))
            rot, pos = np.eye(3), np.zeros(3)
        return moving, (rot, pos)

    def _frames(self, q: np.ndarray):
        """(foot positions (F, 3), joint axes (F, K, 3) and joint origins (F, K, 3) in the
        trunk frame) at joint angles q."""
        angles = np.asarray(q, dtype=np.float64)[self.joint_index] * self.mask
        s, c = np.sin(angles)[..., None, None], np.cos(angles)[..., None, None]
        steps = self.fixed + s * self.sin_part + (1.0 - c) * self.cos_part  # (F, K, 4, 4)
        frames = np.empty_like(steps)  # each joint's child frame in the trunk frame
        frames[:, 0] = steps[:, 0]
        for k in range(1, steps.shape[1]):
            frames[:, k] = frames[:, k - 1] @ steps[:, k]
        feet = np.einsum("fij,fj->fi", frames[:, -1, :3], self.tip)
        axes = np.einsum("fkij,fkj->fki", frames[..., :3, :3], self.axis)
        return feet, axes, frames[..., :3, 3]

    def foot_positions(self, q) -> np.ndarray:
        """(n_feet, 3) foot link origins in the trunk frame, m, at joint angles q (rad)."""
        return self._frames(q)[0]

    def _columns(self, q):
        """(feet (F, 3), Jacobian columns (F, K, 3) m/rad) at q; padding columns are zero."""
        feet, axes, origins = self._frames(q)
        return feet, cross(axes * self.mask[..., None], feet[:, None, :] - origins)

    def forward(self, q) -> tuple[np.ndarray, np.ndarray]:
        """(positions (n_feet, 3) m, Jacobians (n_feet, 3, n_joints) m/rad): d p_f / d q in
        the trunk frame, zero for the joints of other legs."""
        feet, cols = self._columns(q)
        jac = np.zeros((len(self.feet), 3, self.spec.n_joints))
        for f in range(len(self.feet)):
            np.add.at(jac[f].T, self.joint_index[f], cols[f])
        return feet, jac

    def foot_motion(self, q, dq) -> tuple[np.ndarray, np.ndarray]:
        """(positions (n_feet, 3) m, velocities relative to the trunk (n_feet, 3) m/s =
        J(q) dq), trunk frame, at joint angles q (rad) and rates dq (rad/s)."""
        feet, axes, origins = self._frames(q)
        rates = np.asarray(dq, dtype=np.float64)[self.joint_index] * self.mask  # (F, K)
        # sum over the chain of (axis_k dq_k) x (p - o_k), in one contraction
        rel = np.einsum("ijk,fn,fnj,fnk->fi", _LEVI_CIVITA, rates, axes,
                        feet[:, None, :] - origins)
        return feet, rel


def load_leg_kinematics(spec: RobotSpec) -> LegKinematics:
    """The leg kinematics of `spec`, parsed from its description file."""
    return LegKinematics(spec, ET.parse(spec.description_path).getroot())
