"""PyBulletBody: the robot in its own PyBullet world (DIRECT mode, no GUI), torque-controlled
by the shared servo model at sim_dt.

PyBullet has no joint armature. Each spec joint gets a rotor instead, as a real servo has: a
massless-looking link on the joint's parent, turning about the joint axis, geared to the joint
by a gear constraint with ratio ROTOR_GEAR_RATIO (N). A rotor of inertia J / N^2 then adds J to
the joint's inertia, and only J / N^2 to everything else. MuJoCo's armature puts exactly J on
the joint's diagonal of the mass matrix and nothing elsewhere; a real rotor (and this one) also
couples the joint to its parent's rotation through J / N (kinetic energy
(J / N^2)(w_parent + N dq)^2 / 2). That term is why the engines differ by ~1e-3 rad on a
0.3 rad step with J = 0.002 at N = 100 (tests/sim/test_cross_engine.py); the difference shrinks
as 1/N, but Bullet's solver loses accuracy beyond N ~ 200. Coulomb joint
friction is each joint's velocity motor (target 0, maximum force = the friction torque), which
PyBullet keeps alongside the torque commands. Every other joint (a closed-chain leg's passive
knees) has its default velocity motor switched off: it turns freely. The spec's closed chains
are point-to-point constraints between their two links.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from gaitforge.robots.inertia import collision_inertias, write_inertias
from gaitforge.robots.spec import RobotSpec

from .body import GRAVITY_M_S2, SimBody
from .config import SimConfig
from .dynamics import DynamicsParams

ROTOR_GEAR_RATIO = 100.0  # rotor turns per joint turn (see the module docstring)
ROTOR_SUFFIX = "__rotor"
MIN_ROTOR_INERTIA = 1e-12  # kg m^2: a rotor for a joint without armature


@contextlib.contextmanager
def _quiet_c_output():
    """PyBullet's C code prints banners and URDF warnings to fds 1 and 2; keep output clean.
    Failures still surface: PyBullet raises pybullet.error for them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers, else they print after we restore
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


with _quiet_c_output():
    import pybullet
    from pybullet_utils.bullet_client import BulletClient


class PyBulletBody(SimBody):
    engine = "pybullet"

    def __init__(self, spec: RobotSpec, sim: SimConfig, *, fixed_base: bool = False):
        super().__init__(spec, sim, fixed_base=fixed_base)
        with _quiet_c_output():
            self.client = p = BulletClient(connection_mode=pybullet.DIRECT)
        p.setGravity(0, 0, -GRAVITY_M_S2)
        p.setTimeStep(sim.sim_dt_s)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1,
                                    enableConeFriction=int(sim.friction_cone != "pyramid"))
        self.ground = self._make_ground()
        flags = pybullet.URDF_USE_INERTIA_FROM_FILE
        with tempfile.TemporaryDirectory() as tmp, _quiet_c_output():
            urdf = _urdf_with_rotors(spec, Path(tmp))
            self.robot = p.loadURDF(str(urdf), [0, 0, self.spawn_height()],
                                    flags=flags, useFixedBase=fixed_base)
        self._index_links_and_joints()
        # Free every joint and rotor: PyBullet's default velocity motors would fight the
        # torque commands (set_dynamics gives the spec joints' motors the friction torque) and
        # lock the passive joints.
        moving = [i for i in range(p.getNumJoints(self.robot))
                  if p.getJointInfo(self.robot, i)[2] != pybullet.JOINT_FIXED]
        p.setJointMotorControlArray(self.robot, moving, pybullet.VELOCITY_CONTROL,
                                    forces=[0.0] * len(moving))
        for link in [-1, *range(p.getNumJoints(self.robot))]:
            p.changeDynamics(self.robot, link, linearDamping=0.0, angularDamping=0.0,
                             jointDamping=0.0)
        for joint, rotor in zip(self._joint_ids, self._rotor_ids, strict=True):
            p.changeDynamics(self.robot, rotor, maxJointVelocity=1e5)  # N x the joint's speed
            p.changeDynamics(self.robot, joint, maxJointVelocity=1e3)
        self._gears: dict[int, int] = {}  # joint index -> gear constraint, while armature > 0
        self._balance_inertia()
        self._close_chains()
        # PyBullet's base pose and velocity are those of the base's inertial frame (centre of
        # mass, principal axes); RobotState, like MuJoCo, reports the base link frame.
        base_info = p.getDynamicsInfo(self.robot, -1)
        self._base_mass, self._base_inertia = base_info[0], np.array(base_info[2])
        self._com_in_link = (base_info[3], base_info[4])
        self._link_in_com = p.invertTransform(*self._com_in_link)
        self._com_is_link = not any(base_info[3]) and tuple(base_info[4]) == (0, 0, 0, 1)
        self._com_weight = None
        self.set_dynamics(self.params)
        # A snapshot of the fresh world: every reset starts from it, so contact caches and the
        # solver's warm start never carry over from the previous episode (same seed, same run).
        self._clean_state = p.saveState()

    def _make_ground(self) -> int:
        """The ground body: a plane, or the terrain's heightfield, whose edges (at height 0)
        meet a plane at 0 around it (`self._grounds` holds both: a robot that walks off the
        patch walks on, it does not drop into the void)."""
        p = self.client
        plane = p.createMultiBody(0, p.createCollisionShape(pybullet.GEOM_PLANE))
        self._grounds = [plane]
        if self.terrain is None:
            return plane
        h = self.terrain
        # PyBullet centres the field's height range, as first built, on the body origin, and
        # keeps that range when the heights are replaced: build it spanning [0, bound].
        first = np.zeros_like(h.heights)
        first[h.n // 2, h.n // 2] = h.bound_m
        self._ground_shape = shape = p.createCollisionShape(
            pybullet.GEOM_HEIGHTFIELD, meshScale=[h.cell_m, h.cell_m, 1.0],
            heightfieldData=first.ravel().tolist(), numHeightfieldRows=h.n,
            numHeightfieldColumns=h.n)
        ground = p.createMultiBody(0, shape, basePosition=[0, 0, h.bound_m / 2])
        self._grounds.insert(0, ground)
        self._set_heightfield(h)
        return ground

    def _set_heightfield(self, field) -> None:
        self.client.createCollisionShape(
            pybullet.GEOM_HEIGHTFIELD, meshScale=[field.cell_m, field.cell_m, 1.0],
            heightfieldData=field.heights.ravel().tolist(), numHeightfieldRows=field.n,
            numHeightfieldColumns=field.n, replaceHeightfieldIndex=self._ground_shape)

    def _balance_inertia(self) -> None:
        """PyBullet zeroes the inertia of a link whose principal moments break the triangle
        inequality (mini_cheetah's thighs); MuJoCo (compiler balanceinertia) sets all three to
        their mean, trace / 3. Do the same here, so both engines simulate the same bodies."""
        p = self.client
        traces = None
        for link in range(-1, p.getNumJoints(self.robot)):
            mass, _, diagonal = p.getDynamicsInfo(self.robot, link)[:3]
            if mass > 0 and not any(diagonal):
                if traces is None:
                    traces = _urdf_inertia_traces(self.spec.description_path)
                trace = traces.get(self._link_names[link], 0.0)
                if trace > 0:
                    p.changeDynamics(self.robot, link, localInertiaDiagonal=[trace / 3] * 3)

    def _close_chains(self) -> None:
        """A point-to-point constraint per closed chain. PyBullet places a constraint's pivots
        in each link's inertial frame: move the spec's link-frame points there."""
        p = self.client
        index = {name: i for i, name in self._link_names.items()}
        for chain in self.spec.closed_chains:
            pivots = []
            for link, point in ((chain.link_a, chain.point_a), (chain.link_b, chain.point_b)):
                com_pos, com_orn = p.getDynamicsInfo(self.robot, index[link])[3:5]
                to_com = p.invertTransform(com_pos, com_orn)
                pivots.append(p.multiplyTransforms(*to_com, point, [0, 0, 0, 1])[0])
            p.createConstraint(self.robot, index[chain.link_a], self.robot, index[chain.link_b],
                               pybullet.JOINT_POINT2POINT, [0, 0, 0], *pivots)

    def _index_links_and_joints(self) -> None:
        p = self.client
        joints, links = {}, {p.getBodyInfo(self.robot)[0].decode(): -1}
        for i in range(p.getNumJoints(self.robot)):
            info = p.getJointInfo(self.robot, i)
            joints[info[1].decode()] = i
            links[info[12].decode()] = i
        missing = [n for n in self.spec.joint_names if n not in joints]
        if missing:
            raise ValueError(f"{self.spec.description_path}: joints {missing} from the spec "
                             f"are not in the description")
        missing = [n for n in self.spec.feet if n not in links]
        if missing:
            raise ValueError(f"{self.spec.description_path}: feet {missing} not in the description")
        if links.get(self.spec.base_link) != -1:
            raise ValueError(f"{self.spec.description_path}: base_link "
                             f"'{self.spec.base_link}' is not the root link")
        missing = [j.name for j in self.spec.passive_joints if j.name not in joints]
        missing += [name for c in self.spec.closed_chains for name in (c.link_a, c.link_b)
                    if name not in links]
        if missing:
            raise ValueError(f"{self.spec.description_path}: passive joints or closed-chain "
                             f"links {missing} not in the description")
        self._joint_ids = [joints[n] for n in self.spec.joint_names]
        self._rotor_ids = [joints[n + ROTOR_SUFFIX] for n in self.spec.joint_names]
        self._passive_ids = [joints[j.name] for j in self.spec.passive_joints]
        self._link_names = {i: n for n, i in links.items()}

    # Engine primitives ---------------------------------------------------------------------
    def _joint_state(self):
        states = self.client.getJointStates(self.robot, self._joint_ids)
        return (np.array([s[0] for s in states]), np.array([s[1] for s in states]))

    def _apply_torques(self, tau):
        p = self.client
        p.setJointMotorControlArray(self.robot, self._joint_ids, pybullet.TORQUE_CONTROL,
                                    forces=tau.tolist())
        if self._com_weight is not None:
            offset, weight = self._com_weight
            rot = np.reshape(p.getMatrixFromQuaternion(
                p.getBasePositionAndOrientation(self.robot)[1]), (3, 3))
            rx, ry, _ = rot @ offset  # moment of the weight (0, 0, -w) about the link origin
            p.applyExternalTorque(self.robot, -1, [-ry * weight, rx * weight, 0.0],
                                  pybullet.WORLD_FRAME)

    def _physics_step(self):
        self.client.stepSimulation()

    def _base_state(self):
        p = self.client
        pos, quat = p.getBasePositionAndOrientation(self.robot)
        lin, ang = p.getBaseVelocity(self.robot)
        if not self._com_is_link:  # inertial frame -> link frame; v_link = v_com + w x (o - c)
            com = pos
            pos, quat = p.multiplyTransforms(pos, quat, *self._link_in_com)
            lin = np.array(lin) + np.cross(ang, np.subtract(pos, com))
        x, y, z, w = quat
        return np.array(pos), np.array([w, x, y, z]), np.array(lin), np.array(ang)

    def _com_offset_world(self) -> np.ndarray:
        """Base centre of mass minus base link origin, world frame (m)."""
        p = self.client
        com = p.getBasePositionAndOrientation(self.robot)
        origin = p.multiplyTransforms(*com, *self._link_in_com)[0]
        return np.subtract(com[0], origin)

    def _link_contacts(self) -> set[str]:
        """Links that touch: PyBullet also reports points up to a few mm apart (its contact
        threshold), which MuJoCo's zero margin leaves out; a point counts where the shapes
        meet or overlap, or where the solver pushed them apart (a normal force)."""
        return {self._link_names[c[3]] for ground in self._grounds
                for c in self.client.getContactPoints(self.robot, ground)
                if c[8] <= 0.0 or c[9] > 0.0}

    def _reset_state(self, pos, quat, q, dq, lin_vel, ang_vel, passive):
        p = self.client
        p.restoreState(self._clean_state)
        w, x, y, z = quat
        com_pos, com_quat = pos.tolist(), [x, y, z, w]
        if not self._com_is_link:  # link frame -> inertial frame; v_com = v_link + w x (c - o)
            com_pos, com_quat = p.multiplyTransforms(com_pos, com_quat, *self._com_in_link)
            lin_vel = lin_vel + np.cross(ang_vel, np.subtract(com_pos, pos))
        p.resetBasePositionAndOrientation(self.robot, com_pos, com_quat)
        p.resetBaseVelocity(self.robot, lin_vel.tolist(), ang_vel.tolist())
        for jid, qi, dqi in zip(self._joint_ids, q, dq, strict=True):
            p.resetJointState(self.robot, jid, float(qi), float(dqi))
        if passive is not None:
            for jid, qi, dqi in zip(self._passive_ids, *passive, strict=True):
                p.resetJointState(self.robot, jid, float(qi), float(dqi))
        # Contact points are computed by stepSimulation: without this, read() right after a
        # reset reports the previous episode's contacts (MuJoCo's mj_forward recomputes them).
        p.performCollisionDetection()

    def _set_base_velocity(self, lin_vel, ang_vel):
        if not self._com_is_link:
            lin_vel = lin_vel + np.cross(ang_vel, self._com_offset_world())
        self.client.resetBaseVelocity(self.robot, np.asarray(lin_vel).tolist(),
                                      np.asarray(ang_vel).tolist())

    def _set_engine_dynamics(self, params: DynamicsParams):
        p, spec = self.client, self.spec
        for ground in self._grounds:
            p.changeDynamics(ground, -1, lateralFriction=params.foot_friction)
        for link in [-1, *range(p.getNumJoints(self.robot))]:
            p.changeDynamics(self.robot, link, lateralFriction=1.0)
        armature = params.joint_values("armature_kg_m2", spec)
        for i, (rotor, value) in enumerate(zip(self._rotor_ids, armature, strict=True)):
            inertia = max(float(value) / ROTOR_GEAR_RATIO ** 2, MIN_ROTOR_INERTIA)
            p.changeDynamics(self.robot, rotor, localInertiaDiagonal=[inertia] * 3)
            self._gear(i, engaged=value > 0)
        p.setJointMotorControlArray(self.robot, self._joint_ids, pybullet.VELOCITY_CONTROL,
                                    targetVelocities=[0.0] * spec.n_joints,
                                    forces=params.joint_values("joint_friction_nm", spec).tolist())
        mass = self._base_mass + params.trunk_mass_delta_kg
        p.changeDynamics(self.robot, -1, mass=mass)
        # Bullet recomputes a link's inertia from its collision shapes' bounding box when its
        # mass changes: put the description's back, scaled with the mass (as MuJoCo's body)
        if self._base_mass > 0:  # (a fixed base has neither)
            p.changeDynamics(self.robot, -1, localInertiaDiagonal=(
                self._base_inertia * (mass / self._base_mass)).tolist())
        # PyBullet cannot move a loaded link's centre of mass. Approximate the offset by its
        # gravity moment, applied every physics step (inertial coupling is ignored).
        offset = np.asarray(params.com_offset_m, dtype=np.float64)
        self._com_weight = (offset, mass * GRAVITY_M_S2) if offset.any() else None

    def _gear(self, i: int, *, engaged: bool) -> None:
        """Joint i's rotor geared to it (armature > 0), or spinning free (no armature): a gear
        constraint costs the solver, so a joint without armature has none."""
        p = self.client
        if engaged and i not in self._gears:
            gear = p.createConstraint(self.robot, self._joint_ids[i], self.robot,
                                      self._rotor_ids[i], pybullet.JOINT_GEAR, [0, 0, 1],
                                      [0, 0, 0], [0, 0, 0])
            p.changeConstraint(gear, gearRatio=1.0 / ROTOR_GEAR_RATIO, maxForce=1e6)
            self._gears[i] = gear
        elif not engaged and i in self._gears:
            p.removeConstraint(self._gears.pop(i))

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.disconnect()
            self.client = None


def _urdf_inertia_traces(path) -> dict[str, float]:
    """Link name -> ixx + iyy + izz from a URDF's <inertial> elements."""
    out = {}
    for link in ET.parse(path).getroot().findall("link"):
        inertia = link.find("inertial/inertia")
        if inertia is not None:
            out[link.get("name")] = sum(float(inertia.get(k, 0.0)) for k in ("ixx", "iyy", "izz"))
    return out


def _urdf_with_rotors(spec: RobotSpec, folder: Path) -> Path:
    """The spec's URDF, written into `folder`, with a rotor link per spec joint (see the module
    docstring), mesh paths made absolute so it loads from anywhere, and, for a spec with
    `inertia_from: collision`, the link inertias of robots/inertia.py."""
    source = spec.description_path
    tree = ET.parse(source)
    root = tree.getroot()
    if spec.inertia_from == "collision":
        write_inertias(root, collision_inertias(source))
    for element in root.iter():
        name = element.get("filename")
        if name and "://" not in name and not Path(name).is_absolute():
            element.set("filename", str((source.parent / name).resolve()))
    joints = {j.get("name"): j for j in root.findall("joint")}
    for name in spec.joint_names:
        joint = joints[name]
        link = ET.SubElement(root, "link", name=name + ROTOR_SUFFIX)
        inertial = ET.SubElement(link, "inertial")
        ET.SubElement(inertial, "mass", value="1e-4")
        ET.SubElement(inertial, "inertia", ixx="1e-9", iyy="1e-9", izz="1e-9", ixy="0",
                      ixz="0", iyz="0")
        rotor = ET.SubElement(root, "joint", name=name + ROTOR_SUFFIX, type="continuous")
        ET.SubElement(rotor, "parent", link=joint.find("parent").get("link"))
        ET.SubElement(rotor, "child", link=name + ROTOR_SUFFIX)
        for tag in ("origin", "axis"):
            if joint.find(tag) is not None:
                rotor.append(joint.find(tag))
    path = folder / source.name
    tree.write(path)
    return path
