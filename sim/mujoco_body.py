"""MuJoCoBody: the robot's URDF compiled by MuJoCo, with MjSpec adding the free joint, the
ground, one torque motor per joint and an IMU site. The URDF stays the single description.
Joints the spec does not list (a closed-chain leg's knees) get no motor: they turn freely.
Each closed chain is an equality `connect` between a site on each of its two links."""

from __future__ import annotations

import mujoco
import numpy as np

from gaitforge.robots.inertia import collision_inertias
from gaitforge.robots.spec import RobotSpec

from .body import GRAVITY_M_S2, SimBody
from .config import SimConfig
from .dynamics import DynamicsParams
from .terrain import Heightfield

ROBOT_GROUP, GROUND_GROUP = 1, 2  # contype/conaffinity bits: robot touches ground, not itself


def build_model(spec: RobotSpec, sim: SimConfig, field: Heightfield | None, *,
                fixed_base: bool, spawn_height_m: float) -> mujoco.MjModel:
    mj = mujoco.MjSpec.from_file(str(spec.description_path))
    mj.compiler.discardvisual = True
    mj.compiler.fusestatic = False  # keep foot links as bodies, so contacts name them
    mj.compiler.balanceinertia = True  # some shipped URDFs violate the triangle inequality
    mj.compiler.boundmass = 1e-4
    mj.compiler.boundinertia = 1e-8
    mj.option.timestep = sim.sim_dt_s
    mj.option.gravity = [0, 0, -GRAVITY_M_S2]
    mj.option.integrator = mujoco.mjtIntegrator.mjINT_EULER
    mj.option.cone = (mujoco.mjtCone.mjCONE_ELLIPTIC if sim.friction_cone == "elliptic"
                      else mujoco.mjtCone.mjCONE_PYRAMIDAL)

    base = mj.body(spec.base_link)
    if base is None or base.parent.name != "world":
        raise ValueError(f"{spec.description_path}: base_link '{spec.base_link}' is not the root")
    base.pos = [0, 0, spawn_height_m]
    if not fixed_base:
        base.add_freejoint(name="root")
    base.add_site(name="imu", pos=[0, 0, 0])

    for geom in mj.geoms:
        geom.contype, geom.conaffinity = ROBOT_GROUP, 0
        # MuJoCo combines friction by max: keep the robot's tiny so the ground's value rules,
        # matching PyBullet (product with the robot links' 1.0).
        geom.friction = [1e-3, 1e-5, 1e-7]
    if field is None:
        ground = mj.worldbody.add_geom(name="ground", type=mujoco.mjtGeom.mjGEOM_PLANE,
                                       size=[0, 0, 0.05])
    else:
        top = field.bound_m or 1e-6
        mj.add_hfield(name="terrain", size=[field.half_extent_m, field.half_extent_m, top, 0.1],
                      nrow=field.n, ncol=field.n, userdata=(field.heights / top).ravel().tolist())
        ground = mj.worldbody.add_geom(name="ground", type=mujoco.mjtGeom.mjGEOM_HFIELD,
                                       hfieldname="terrain")
        # the field's edges are at 0: a plane there carries a robot that walks off the patch
        apron = mj.worldbody.add_geom(name="ground_around", type=mujoco.mjtGeom.mjGEOM_PLANE,
                                      size=[0, 0, 0.05])
        apron.contype, apron.conaffinity = 0, ROBOT_GROUP | GROUND_GROUP
    ground.contype, ground.conaffinity = 0, ROBOT_GROUP | GROUND_GROUP

    for name in spec.joint_names:
        if mj.joint(name) is None:
            raise ValueError(f"{spec.description_path}: joint '{name}' from the spec is not "
                             f"in the description")
        joint = mj.joint(name)
        joint.damping = np.zeros_like(joint.damping)
        joint.armature, joint.frictionloss = 0.0, 0.0
        mj.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                        gainprm=[1.0] + [0.0] * 9)
    mj.add_sensor(name="accel", type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
                  objtype=mujoco.mjtObj.mjOBJ_SITE, objname="imu")
    _passive_and_closed(mj, spec, sim)
    for foot in spec.feet:
        if mj.body(foot) is None:
            raise ValueError(f"{spec.description_path}: foot '{foot}' not in the description")
    return mj.compile()


def _passive_and_closed(mj: mujoco.MjSpec, spec: RobotSpec, sim: SimConfig) -> None:
    """Collision-shape inertias (spec `inertia_from`), passive joints without damping,
    friction or armature, and an equality connect per closed chain, as stiff as the physics
    step allows (MuJoCo's default time constant, 0.02 s, lets a loaded chain gape)."""
    if spec.inertia_from == "collision":
        for link, tensor in collision_inertias(spec.description_path).items():
            body = mj.body(link)
            body.fullinertia = [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[0, 1],
                                tensor[0, 2], tensor[1, 2]]
    for passive in spec.passive_joints:
        joint = mj.joint(passive.name)
        if joint is None:
            raise ValueError(f"{spec.description_path}: passive joint '{passive.name}' is not "
                             "in the description")
        joint.damping = np.zeros_like(joint.damping)
        joint.armature, joint.frictionloss = 0.0, 0.0
    for i, chain in enumerate(spec.closed_chains):
        sites = []
        for side, link, point in (("a", chain.link_a, chain.point_a),
                                  ("b", chain.link_b, chain.point_b)):
            body = mj.body(link)
            if body is None:
                raise ValueError(f"{spec.description_path}: closed-chain link '{link}' is not "
                                 "in the description")
            sites.append(body.add_site(name=f"closure{i}_{side}", pos=list(point)).name)
        mj.add_equality(type=mujoco.mjtEq.mjEQ_CONNECT, objtype=mujoco.mjtObj.mjOBJ_SITE,
                        name1=sites[0], name2=sites[1],
                        solref=[2.0 * sim.sim_dt_s, 1.0])


class MuJoCoBody(SimBody):
    engine = "mujoco"

    def __init__(self, spec: RobotSpec, sim: SimConfig, *, fixed_base: bool = False):
        super().__init__(spec, sim, fixed_base=fixed_base)
        self.model = m = build_model(spec, sim, self.terrain, fixed_base=fixed_base,
                                     spawn_height_m=self.spawn_height())
        self.data = mujoco.MjData(m)
        joints = [m.joint(n) for n in spec.joint_names]
        self._qadr = np.array([j.qposadr[0] for j in joints])
        self._vadr = np.array([j.dofadr[0] for j in joints])
        # Fast paths: when joints are contiguous, plain slices give views, not copies.
        q0, v0 = self._qadr[0], self._vadr[0]
        contiguous = (np.all(self._qadr == q0 + np.arange(len(joints)))
                      and np.all(self._vadr == v0 + np.arange(len(joints))))
        self._qsl = slice(q0, q0 + len(joints)) if contiguous else self._qadr
        self._vsl = slice(v0, v0 + len(joints)) if contiguous else self._vadr
        passive = [m.joint(j.name) for j in spec.passive_joints]
        self._passive_qadr = np.array([j.qposadr[0] for j in passive], dtype=np.int64)
        self._passive_vadr = np.array([j.dofadr[0] for j in passive], dtype=np.int64)
        act_ids = [m.actuator(n).id for n in spec.joint_names]
        self._act = slice(act_ids[0], act_ids[-1] + 1) if act_ids == list(
            range(act_ids[0], act_ids[0] + len(act_ids))) else np.array(act_ids)
        self._base_id = m.body(spec.base_link).id
        self._ground_geom = m.geom("ground").id
        self._ground_geoms = np.array([i for i in (self._ground_geom, mujoco.mj_name2id(
            m, mujoco.mjtObj.mjOBJ_GEOM, "ground_around")) if i >= 0])  # the field's apron
        self._body_names = [m.body(i).name for i in range(m.nbody)]
        self._base_mass = float(m.body_mass[self._base_id])
        self._base_ipos = m.body_ipos[self._base_id].copy()
        self._base_inertia = m.body_inertia[self._base_id].copy()
        self.set_dynamics(self.params)
        mujoco.mj_forward(m, self.data)

    # Engine primitives ---------------------------------------------------------------------
    def _joint_state(self):
        d = self.data
        return d.qpos[self._qsl], d.qvel[self._vsl]

    def _apply_torques(self, tau):
        self.data.ctrl[self._act] = tau

    def _physics_step(self):
        mujoco.mj_step(self.model, self.data)

    def _base_state(self):
        d = self.data
        if self.fixed_base:
            b = self._base_id
            return (d.xpos[b].copy(), d.xquat[b].copy(), np.zeros(3), np.zeros(3))
        # Free joint: qvel[3:6] is the angular velocity in the body frame; rotate to world.
        quat = d.qpos[3:7].copy()
        rot = d.xmat[self._base_id].reshape(3, 3)
        return d.qpos[0:3].copy(), quat, d.qvel[0:3].copy(), rot @ d.qvel[3:6]

    def _set_heightfield(self, field: Heightfield) -> None:
        m = self.model
        start, size = m.hfield_adr[0], field.n * field.n
        m.hfield_data[start:start + size] = field.heights.ravel() / m.hfield_size[0][2]
        self.close()  # sim/render.py's renderer holds the old field's mesh: a new one is made

    def close(self) -> None:
        """Release the renderer sim/render.py may have made (the model and data need nothing)."""
        renderer = self.__dict__.pop("_renderer", None)
        if renderer is not None:
            renderer.close()

    def _link_contacts(self) -> set[str]:
        d = self.data
        n = d.ncon
        if n == 0:
            return set()
        geoms = d.contact.geom[:n]  # (n, 2); a ground geom is always one side
        other = np.where(np.isin(geoms[:, 0], self._ground_geoms), geoms[:, 1], geoms[:, 0])
        return {self._body_names[b] for b in self.model.geom_bodyid[other]}

    def _reset_state(self, pos, quat, q, dq, lin_vel, ang_vel, passive):
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        if self.fixed_base:  # no free joint: the base is welded where the model puts it
            m.body_pos[self._base_id], m.body_quat[self._base_id] = pos, quat
        else:
            d.qpos[0:3], d.qpos[3:7] = pos, quat
            mujoco.mj_kinematics(m, d)
            self._set_base_velocity(lin_vel, ang_vel)
        d.qpos[self._qadr], d.qvel[self._vadr] = q, dq
        if passive is not None:
            d.qpos[self._passive_qadr], d.qvel[self._passive_vadr] = passive
        mujoco.mj_forward(m, d)

    def _set_base_velocity(self, lin_vel, ang_vel):
        if self.fixed_base:
            return
        d = self.data
        rot = d.xmat[self._base_id].reshape(3, 3)
        d.qvel[0:3], d.qvel[3:6] = lin_vel, rot.T @ np.asarray(ang_vel)

    def _set_engine_dynamics(self, params: DynamicsParams):
        m, b, spec = self.model, self._base_id, self.spec
        m.geom_friction[self._ground_geoms, 0] = params.foot_friction
        # MuJoCo's own rotor inertia and Coulomb friction (frictionloss) per joint dof
        m.dof_armature[self._vadr] = params.joint_values("armature_kg_m2", spec)
        m.dof_frictionloss[self._vadr] = params.joint_values("joint_friction_nm", spec)
        # the friction constraint as stiff as the step allows (MuJoCo's default time constant,
        # 0.02 s, lets a joint creep under a load below its friction)
        m.dof_solref[self._vadr, 0] = 2.0 * self.sim.sim_dt_s
        scale = (self._base_mass + params.trunk_mass_delta_kg) / self._base_mass
        m.body_mass[b] = self._base_mass * scale
        m.body_inertia[b] = self._base_inertia * scale
        m.body_ipos[b] = self._base_ipos + np.asarray(params.com_offset_m)
        mujoco.mj_setConst(m, self.data)
