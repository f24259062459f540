"""Servo actuator model, run once per physics step (sim_dt) by every engine.

    tau = strength * (kp_scale * kp * (q* - q) - kd_scale * kd * dq + tau_ff)     (position mode)
    tau = -strength * kd_scale * kd * dq                                       (damping mode)
    tau = 0                                                                    (off)
then clipped to the torque limit and, optionally, to the DC-motor torque-speed envelope:
    upper = strength * tau_max * clip(1 - dq / w_max, 0, 1)
    lower = -strength * tau_max * clip(1 + dq / w_max, 0, 1)
so the torque available in the direction of motion falls linearly to zero at the no-load speed
w_max, while braking torque stays at tau_max. The joint's own viscous damping, `-damping * dq`,
is added after the clip (it is the joint's, not the servo's, so no limit applies), in every
mode. Every factor may be a scalar or a per-joint array (sim/dynamics.py). A command takes
effect `latency_s` after it is written, rounded to whole physics steps. Coulomb joint
friction and rotor inertia (armature) are engine constraints, set by each body.

Both engines run exactly this code with engine joint torque control, so a position step gives
the same joint response in PyBullet and MuJoCo up to each engine's integrator.

DCMotorActuator, the option for a robot whose spec names a DC motor (`actuator: {name:
dc_motor, ...}`, robots/spec.py DCMotorSpec; Tan et al. 2018), keeps the PD, the modes and
the latency, and replaces the clip and the envelope by the motor behind a PWM driver:

    duty    = clip(tau_pd / (K_t V / R), -1, 1)     tau_pd: the PD torque above, without strength
    current = clip(duty V - (K_t + b) dq, -V_clip, V_clip) / R
    tau     = strength * sign(current) * curve(|current|), clipped to strength * tau_max

V the battery voltage, R the winding resistance, K_t the torque constant (= back-EMF constant),
b the viscous damping (V s/rad), V_clip the driver's diode clamp, curve the measured torque at a
current (linear between its points, flat beyond the last). So the spec's gains keep their
units: at rest, within the curve's linear part, tau = tau_pd up to the duty's saturation. The
back-EMF takes the torque-speed envelope's place: at full duty the torque falls to zero at the
no-load speed V / (K_t + b), and with zero duty a turning motor brakes. `motor_strength`
scales the motor's torque, not the controller's gains. Mode `off` opens the driver: no torque.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gaitforge.robots.spec import DCMotorSpec, RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand


class ServoActuator:
    def __init__(self, spec: RobotSpec, sim_dt_s: float, latency_s: float = 0.0,
                 torque_speed_limit: bool = True):
        self.spec = spec
        self.sim_dt_s = sim_dt_s
        self.torque_speed_limit = torque_speed_limit
        self._tau_max = spec.torque_limit_nm.copy()
        self._inv_w_max = 1.0 / spec.velocity_limit_rad_s
        self.set_params(latency_s=latency_s)
        self.reset(spec.default_pose_rad)

    def set_params(self, *, strength=1.0, kp_scale=1.0, kd_scale=1.0, latency_s: float = 0.0,
                   damping_nm_s_per_rad=0.0) -> None:
        """Per-episode dynamics (scalars or per-joint arrays): motor strength, PD gain scales,
        latency, viscous joint damping."""
        n = self.spec.n_joints
        self.strength = np.broadcast_to(np.asarray(strength, np.float64), (n,)).copy()
        self._kp_scale = self.strength * np.asarray(kp_scale, np.float64)
        self._kd_scale = self.strength * np.asarray(kd_scale, np.float64)
        damping = np.broadcast_to(np.asarray(damping_nm_s_per_rad, np.float64), (n,))
        self._damping = damping.copy() if damping.any() else None
        self._limit = self._tau_max * self.strength
        self._neg_limit = -self._limit
        self._slope = self._limit * self._inv_w_max  # N·m lost per rad/s of speed
        self._zeros = np.zeros_like(self._limit)
        self.latency_steps = int(round(latency_s / self.sim_dt_s))

    def reset(self, hold_position_rad: np.ndarray) -> None:
        """Forget queued commands; hold `hold_position_rad` until the first command arrives."""
        self._queue: deque[tuple[int, JointCommand]] = deque()
        self._step = 0
        self._activate(JointCommand(position_rad=np.array(hold_position_rad, dtype=np.float64)))

    def command(self, command: JointCommand) -> None:
        self._queue.append((self._step + self.latency_steps, command))

    def _activate(self, cmd: JointCommand) -> None:
        self._mode = cmd.mode
        self._target = np.asarray(cmd.position_rad, dtype=np.float64)
        kp = self.spec.kp if cmd.kp_nm_per_rad is None else cmd.kp_nm_per_rad
        kd = self.spec.kd if cmd.kd_nm_s_per_rad is None else cmd.kd_nm_s_per_rad
        self._cmd_kp = self._kp_scale * np.asarray(kp)
        self._cmd_kd = self._kd_scale * np.asarray(kd)
        self._ff = (None if cmd.torque_ff_nm is None
                    else self.strength * np.asarray(cmd.torque_ff_nm, dtype=np.float64))

    def _pd(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray | None:
        """The PD (+ feed-forward) torque of the active command, or None when off; advances the
        latency clock by one step."""
        queue = self._queue
        while queue and queue[0][0] <= self._step:
            self._activate(queue.popleft()[1])
        self._step += 1
        if self._mode is CommandMode.POSITION:
            tau = self._cmd_kp * (self._target - q) - self._cmd_kd * dq
            if self._ff is not None:
                tau += self._ff
            return tau
        if self._mode is CommandMode.DAMPING:
            return -self._cmd_kd * dq
        return None

    def torque(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """Joint torques (N·m) for this physics step; advances the latency clock by one step."""
        tau = self._pd(q, dq)
        if tau is not None:  # strength is folded into the gains (and ff): clip to the envelope
            minimum, maximum = np.minimum, np.maximum
            if self.torque_speed_limit:
                loss = self._slope * dq
                upper = minimum(maximum(self._limit - loss, self._zeros), self._limit)
                lower = maximum(minimum(self._neg_limit - loss, self._zeros), self._neg_limit)
                tau = minimum(maximum(tau, lower), upper)
            else:
                tau = minimum(maximum(tau, self._neg_limit), self._limit)
        if self._damping is None:
            return np.zeros_like(q) if tau is None else tau
        return (0.0 if tau is None else tau) - self._damping * dq


class DCMotorActuator(ServoActuator):
    """The servo model's PD and latency driving a DC motor (see the module docstring)."""

    def __init__(self, spec: RobotSpec, motor: DCMotorSpec, sim_dt_s: float,
                 latency_s: float = 0.0):
        self.motor = motor
        self._duty_per_nm = 1.0 / motor.full_duty_stall_torque_nm
        self._back_emf = motor.torque_constant_nm_per_a + motor.viscous_damping_v_s_per_rad
        self._curve = (np.asarray(motor.current_a, np.float64),
                       np.asarray(motor.torque_nm, np.float64))
        super().__init__(spec, sim_dt_s, latency_s, torque_speed_limit=False)

    def set_params(self, *, strength=1.0, kp_scale=1.0, kd_scale=1.0, latency_s: float = 0.0,
                   damping_nm_s_per_rad=0.0) -> None:
        """As the servo's; strength scales the motor's torque and limit, not the gains."""
        super().set_params(strength=1.0, kp_scale=kp_scale, kd_scale=kd_scale,
                           latency_s=latency_s, damping_nm_s_per_rad=damping_nm_s_per_rad)
        n = self.spec.n_joints  # self.strength stays 1: gains and feed-forward are unscaled
        self._motor_strength = np.broadcast_to(np.asarray(strength, np.float64), (n,)).copy()
        self._limit = self._tau_max * self._motor_strength

    def motor_torque(self, duty: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """Torque (N·m) of the motors at PWM duty `duty` in [-1, 1] turning at dq (rad/s)."""
        m = self.motor
        volts = np.clip(duty * m.battery_voltage_v - self._back_emf * dq,
                        -m.voltage_clip_v, m.voltage_clip_v)
        current = volts / m.resistance_ohm
        tau = self._motor_strength * np.sign(current) * np.interp(np.abs(current), *self._curve)
        return np.clip(tau, -self._limit, self._limit)

    def torque(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """Joint torques (N·m) for this physics step; advances the latency clock by one step."""
        demand = self._pd(q, dq)
        tau = (np.zeros_like(q) if demand is None
               else self.motor_torque(np.clip(demand * self._duty_per_nm, -1.0, 1.0), dq))
        return tau if self._damping is None else tau - self._damping * dq


def make_actuator(spec: RobotSpec, sim_dt_s: float, latency_s: float = 0.0,
                  torque_speed_limit: bool = True, model: str = "spec") -> ServoActuator:
    """The robot's actuator model: its spec's (`model="spec"`), or the plain servo model
    (`model="servo"`, also for a robot whose spec names a DC motor)."""
    if model == "spec" and isinstance(spec.actuator, DCMotorSpec):
        return DCMotorActuator(spec, spec.actuator, sim_dt_s, latency_s)
    return ServoActuator(spec, sim_dt_s, latency_s, torque_speed_limit)
