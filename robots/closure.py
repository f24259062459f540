"""Closed kinematic chains: the passive joint angles that close a spec's `closed_chains`, from
the driven joints' angles, in NumPy (no engine, so the robot computer runs it too).

A description file is a tree; a closed-chain leg (Minitaur's five-bar) is a tree whose two
branches end on one point. The spec names the two points (`closed_chains`: point_a on link_a,
point_b on link_b) and the passive joints with their standing angles (`passive_joints`). For
driven angles q, `solve(q)` finds the passive angles p with

    r(q, p) = x_a(q, p) - x_b(q, p) = 0          (x: a point in the trunk frame, m)

by Gauss-Newton (least squares, so a description whose points meet only to ~1e-5 m still
converges), continued from the standing pose in steps of at most STEP_RAD per driven joint, so
the linkage stays on the standing pose's branch (a five-bar closes two ways). The Jacobian
columns are exact: d x / d theta_j = axis_j x (x - origin_j) for each joint on the point's
path (robots/kinematics.py's PointChains, vectorised over the points).

    closure = load_closure(spec)
    p = closure.solve(q)                        # (n_passive,) rad
    s = closure.sensitivity(q, p)               # (n_passive, n_joints) d p / d q
    closure.gaps(q, p)                          # (n_chains,) |x_a - x_b|, m
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from .kinematics import PointChains, parse_urdf_joints
from .spec import RobotSpec

STEP_RAD = 0.5  # largest change of any driven joint per continuation step
TOLERANCE_RAD = 1e-12  # Gauss-Newton stops when no passive angle moves more than this
MAX_ITERATIONS = 30
MAX_GAP_M = 1e-3  # a solution whose points stay further apart is refused


class ClosedChainError(ValueError):
    """The closed chains cannot be closed at the asked joint angles."""


class Closure:
    """The spec's closed chains over its description (see the module docstring)."""

    def __init__(self, spec: RobotSpec, urdf: ET.Element):
        self.spec = spec
        self.n_joints, self.n_passive = n, _ = spec.n_joints, len(spec.passive_joints)
        index = {name: i for i, name in enumerate(spec.joint_names)}
        index.update({j.name: n + k for k, j in enumerate(spec.passive_joints)})
        ends = [end for c in spec.closed_chains
                for end in ((c.link_a, c.point_a), (c.link_b, c.point_b))]
        self.points = PointChains(spec, parse_urdf_joints(urdf), ends, index,
                                  kind="closed-chain link")
        self._standing = np.array(spec.passive_default_rad, dtype=np.float64)

    def residual(self, q, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(r (3 n_chains,) m, d r / d q (3 n_chains, n_joints), d r / d p (.., n_passive))."""
        points, jac = self.points.jacobian(np.concatenate([q, p]), self.n_joints + self.n_passive)
        r = (points[0::2] - points[1::2]).ravel()
        jac = (jac[0::2] - jac[1::2]).reshape(-1, self.n_joints + self.n_passive)
        return r, jac[:, :self.n_joints], jac[:, self.n_joints:]

    def gaps(self, q, p) -> np.ndarray:
        """(n_chains,) distance between each chain's two points, m."""
        return np.linalg.norm(self.residual(q, p)[0].reshape(-1, 3), axis=1)

    # Solving ----------------------------------------------------------------------------------
    def solve(self, q) -> np.ndarray:
        """(n_passive,) passive angles (rad) that close every chain at driven angles q, on the
        standing pose's branch; ClosedChainError where the chains cannot close."""
        q = np.asarray(q, dtype=np.float64)
        start = np.asarray(self.spec.default_pose_rad)
        steps = max(1, math.ceil(float(np.max(np.abs(q - start), initial=0.0)) / STEP_RAD))
        p = self._standing.copy()
        for s in range(1, steps + 1):
            p = self._newton(q if s == steps else start + (q - start) * (s / steps), p)
        gap = float(np.max(self.gaps(q, p), initial=0.0))
        if not gap <= MAX_GAP_M:
            raise ClosedChainError(f"{self.spec.name}: closed chains cannot close at joint "
                                   f"angles {np.round(q, 4).tolist()} (gap {gap:.3g} m)")
        return p

    def _newton(self, q, p) -> np.ndarray:
        for _ in range(MAX_ITERATIONS):
            r, _, jp = self.residual(q, p)
            step = np.linalg.lstsq(jp, r, rcond=None)[0]
            p = p - step
            if np.max(np.abs(step), initial=0.0) < TOLERANCE_RAD:
                break
        return p

    def sensitivity(self, q, p) -> np.ndarray:
        """(n_passive, n_joints) d p / d q at a closed pose: the rates dp = S dq that keep the
        chains closed (least squares, like solve)."""
        _, jq, jp = self.residual(np.asarray(q, float), np.asarray(p, float))
        return -np.linalg.lstsq(jp, jq, rcond=None)[0]

    def driven_by(self, passive_index: int) -> list[int]:
        """Spec joint indices on the chains that hold passive joint `passive_index`."""
        n, out = self.n_joints, []
        columns = self.points.chain_columns
        for a, b in zip(columns[0::2], columns[1::2], strict=True):
            if n + passive_index in a + b:
                out += [c for c in a + b if c < n and c not in out]
        return out


def load_closure(spec: RobotSpec) -> Closure | None:
    """The closure of `spec` (None for a robot without closed chains)."""
    if not spec.closed_chains:
        return None
    return Closure(spec, ET.parse(spec.description_path).getroot())
