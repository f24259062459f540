"""SimBody: what PyBullet and MuJoCo bodies share. Implements the Robot protocol.

An engine subclass provides a handful of primitives (joint state, apply torques, one physics
step, base state, contacts, reset, dynamics parameters); the actuator model, lifecycle, IMU
emulation and the physics sub-stepping live here, once.
"""

from __future__ import annotations

import abc

import numpy as np

from gaitforge.robots.closure import load_closure
from gaitforge.robots.kinematics import quat_to_matrix
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import (
    JointCommand,
    Lifecycle,
    LifecycleError,
    PrivilegedState,
    RobotState,
)

from .actuator import make_actuator
from .config import SimConfig
from .dynamics import DynamicsParams
from .tasks import collision_links
from .terrain import Heightfield, ground_height, make_heightfield

GRAVITY_M_S2 = 9.81


def hang_height(spec: RobotSpec) -> float:
    """Where a hung robot's trunk is held (m): high enough that no foot reaches the ground."""
    return 3.0 * spec.standing_height_m


class SimBody(Lifecycle, abc.ABC):
    """A simulated robot. `step()` advances physics by one control period (sim-only)."""

    engine: str = ""

    def __init__(self, spec: RobotSpec, sim: SimConfig, *, fixed_base: bool = False):
        self.spec = spec
        self.sim = sim
        self.fixed_base = fixed_base
        self.terrain: Heightfield | None = make_heightfield(sim.terrain)
        self.actuator = make_actuator(spec, sim.sim_dt_s, sim.actuator.latency_s,
                                      sim.actuator.torque_speed_limit, sim.actuator.model)
        self.params = DynamicsParams(foot_friction=sim.terrain.friction,
                                     latency_s=sim.actuator.latency_s)
        # closed chains (robots/closure.py): every reset puts the passive joints where the
        # chains close, and a contact of a chain's link_b counts as its link_a's
        self.closure = load_closure(spec)
        self._contact_alias = {c.link_b: c.link_a for c in spec.closed_chains}
        self.time_s = 0.0
        self._last_tau = np.zeros(spec.n_joints)
        self._prev_base_vel = np.zeros(3)
        self._accel_world = np.zeros(3)
        self._contact_cache: set[str] | None = None

    # Robot protocol (configure / activate / deactivate from Lifecycle) -------------------
    def write(self, command: JointCommand) -> None:
        if not self._active:
            raise LifecycleError(f"{type(self).__name__}: write() while not active")
        self.actuator.command(command)

    def read(self) -> RobotState:
        q, dq = self._joint_state()
        pos, quat, lin_vel_w, ang_vel_w = self._base_state()
        to_body = quat_to_matrix(quat).T
        specific_force_w = self._accel_world + np.array([0.0, 0.0, GRAVITY_M_S2])
        ang_vel_b = to_body @ ang_vel_w
        touching = self.link_contacts()
        feet = np.array([f in touching for f in self.spec.feet])
        trunk = self.spec.base_link in touching
        return RobotState(
            time_s=self.time_s,
            joint_pos_rad=q.copy(),
            joint_vel_rad_s=dq.copy(),
            imu_quat_wxyz=quat.copy(),
            gyro_rad_s=ang_vel_b,
            accel_m_s2=to_body @ specific_force_w,
            joint_torque_nm=self._last_tau.copy(),
            privileged=PrivilegedState(
                base_pos_m=pos.copy(),
                base_lin_vel_m_s=to_body @ lin_vel_w,
                base_ang_vel_rad_s=ang_vel_b.copy(),
                foot_contact=feet,
                friction=self.params.foot_friction,
                trunk_contact=trunk,
                base_height_m=float(pos[2] - ground_height(self.terrain, pos[0], pos[1])),
                collisions=float(len(collision_links(self.spec, touching))),
            ),
        )

    # Simulation ----------------------------------------------------------------------------
    def step(self, n_substeps: int | None = None) -> None:
        """Advance physics by n_substeps physics steps (default: one control period); 0 does
        nothing (replay asks for it when a logged command was written at a tick's end)."""
        n = self.sim.substeps if n_substeps is None else n_substeps
        if n <= 0:  # nothing to advance (a replayed write that landed on a tick boundary)
            return
        torque = self.actuator.torque
        window = min(n, self.sim.accel_window_steps)
        for i in range(n):
            if i == n - window and i > 0:  # the accelerometer's window starts here
                self._prev_base_vel = self._base_state()[2].copy()
            q, dq = self._joint_state()
            tau = torque(q, dq)
            self._apply_torques(tau)
            self._physics_step()
        self._last_tau = tau
        self._contact_cache = None
        self.time_s += n * self.sim.sim_dt_s
        vel = self._base_state()[2]
        self._accel_world = (vel - self._prev_base_vel) / (window * self.sim.sim_dt_s)
        self._prev_base_vel = vel.copy()

    def reset(self, *, base_pos_m, base_quat_wxyz, joint_pos_rad, joint_vel_rad_s=None,
              base_lin_vel_m_s=(0.0, 0.0, 0.0), base_ang_vel_rad_s=(0.0, 0.0, 0.0)) -> None:
        """Teleport to a state (world-frame velocities); the servos hold joint_pos_rad. Passive
        joints of closed chains take the angles and rates that keep the chains closed."""
        q = np.asarray(joint_pos_rad, dtype=np.float64)
        dq = np.zeros_like(q) if joint_vel_rad_s is None else np.asarray(joint_vel_rad_s, float)
        lin = np.asarray(base_lin_vel_m_s, dtype=np.float64)
        passive = None
        if self.closure is not None:
            angles = self.closure.solve(q)
            passive = (angles, self.closure.sensitivity(q, angles) @ dq)
        self._reset_state(np.asarray(base_pos_m, float), np.asarray(base_quat_wxyz, float), q, dq,
                          lin, np.asarray(base_ang_vel_rad_s, float), passive)
        self.actuator.reset(q)
        self.time_s = 0.0
        self._last_tau = np.zeros(self.spec.n_joints)
        self._contact_cache = None
        self._prev_base_vel = lin.copy()
        self._accel_world = np.zeros(3)

    def reset_standing(self, base_quat_wxyz=(1.0, 0.0, 0.0, 0.0), joint_pos_rad=None) -> None:
        """Stand at the origin on the local ground, at rest, in `joint_pos_rad` (default: the
        spec's default pose) with the trunk at its standing height; a fixed-base (hung) body
        hangs at `hang_height` instead, its feet clear of the ground."""
        q = self.spec.default_pose_rad if joint_pos_rad is None else joint_pos_rad
        z = hang_height(self.spec) if self.fixed_base else self.spawn_height()
        self.reset(base_pos_m=[0.0, 0.0, z], base_quat_wxyz=base_quat_wxyz, joint_pos_rad=q)

    def set_dynamics(self, params: DynamicsParams) -> None:
        """Apply `params` (sim/dynamics.py): the servo model's part here, the rest (foot
        friction, trunk mass and centre of mass, armature, joint friction) in the engine."""
        self.params = params
        spec = self.spec
        self.actuator.set_params(
            strength=params.joint_values("motor_strength", spec),
            kp_scale=params.joint_values("kp_scale", spec),
            kd_scale=params.joint_values("kd_scale", spec), latency_s=params.latency_s,
            damping_nm_s_per_rad=params.joint_values("joint_damping_nm_s_per_rad", spec))
        self._set_engine_dynamics(params)

    def push(self, delta_lin_vel_world_m_s) -> None:
        """Add a velocity to the trunk (a shove)."""
        pos, quat, lin, ang = self._base_state()
        self._set_base_velocity(lin + np.asarray(delta_lin_vel_world_m_s, float), ang)

    def link_contacts(self) -> set[str]:
        """Names of robot links touching the ground now (cached until the next step)."""
        if self._contact_cache is None:
            links = self._link_contacts()
            if self._contact_alias:
                links = {self._contact_alias.get(name, name) for name in links}
            self._contact_cache = links
        return self._contact_cache

    def set_terrain(self, field: Heightfield) -> None:
        """Load a new field of the shape and bound this body's terrain was built with (the
        next episode's level); the robot is placed on it by the next reset."""
        old = self.terrain
        if old is None or field.heights.shape != old.heights.shape \
                or field.cell_m != old.cell_m or field.bound_m != old.bound_m:
            raise ValueError("set_terrain needs a field of the built terrain's size, cell and "
                             "height bound (terrain kind 'levels')")
        if field.heights.max() > field.bound_m + 1e-9:
            raise ValueError(f"terrain height {field.heights.max():.3f} m is above the field's "
                             f"bound {field.bound_m:.3f} m")
        self.terrain = field
        self._set_heightfield(field)

    def spawn_height(self, x: float = 0.0, y: float = 0.0) -> float:
        """Trunk height for a robot standing at (x, y): local terrain top + standing height."""
        top = 0.0 if self.terrain is None else self.terrain.max_height_near(x, y, 0.3)
        return top + self.spec.standing_height_m

    # Engine primitives ---------------------------------------------------------------------
    @abc.abstractmethod
    def _joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, dq) in canonical joint order; may be views the caller must not keep."""

    @abc.abstractmethod
    def _apply_torques(self, tau: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _physics_step(self) -> None: ...

    @abc.abstractmethod
    def _base_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(position m, quaternion wxyz, linear velocity m/s, angular velocity rad/s), world."""

    @abc.abstractmethod
    def _reset_state(self, pos, quat, q, dq, lin_vel, ang_vel, passive) -> None:
        """Teleport; `passive`: None, or (angles, rates) of the spec's passive_joints."""

    @abc.abstractmethod
    def _set_base_velocity(self, lin_vel, ang_vel) -> None: ...

    @abc.abstractmethod
    def _set_engine_dynamics(self, params: DynamicsParams) -> None: ...

    @abc.abstractmethod
    def _set_heightfield(self, field: Heightfield) -> None:
        """Replace the ground's heights in the engine (same size and bound)."""

    @abc.abstractmethod
    def _link_contacts(self) -> set[str]:
        """Names of robot links touching the ground."""
