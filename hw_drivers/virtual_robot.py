"""A whole virtual robot on pseudo-terminals: the device models of `virtual_dynamixel` and
`board`, coupled to a body that follows the `Robot` protocol, served by `virtual.py`.

Coupling (every server iteration, and before each request is answered):
    device goals -> JointCommand -> body.write;  body.read() -> device present values.
The body is expected to advance its own physics to the wall clock when read (the CLI wraps a
simulated body that way), so the devices answer with the state of a robot moving in real time.

Dynamixel: per servo, torque off -> kp = kd = 0; position P gain 0 -> damping (kp 0, spec
kd); otherwise the goal position with the spec's gains. Present position, velocity and
current are written back in servo units through the hardware YAML's `JointCalibration`, the
same conversions the host backends use (directions and offsets included). A Dynamixel bus
has no IMU: a second device, a board on its own pty, serves it. Board: the board's applied
command (servo side) drives the body; its STATE carries the body's measured state (servo
side).
"""

from __future__ import annotations

import threading

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand

from .board import VirtualBoard
from .dynamixel import ControlTable as CT
from .hwconfig import HwConfig, JointCalibration
from .virtual import FaultSpec, PtyPort, VirtualDeviceServer
from .virtual_dynamixel import VirtualServoChain


class DynamixelCoupling:
    def __init__(self, chain: VirtualServoChain, imu: VirtualBoard, cal: JointCalibration,
                 body, spec: RobotSpec, lock: threading.Lock):
        self.chain, self.imu, self.cal, self.body, self.spec, self.lock = \
            chain, imu, cal, body, spec, lock
        self.servos = [chain.table(i) for i in cal.ids]  # spec order
        self.sync(0.0)

    def sync(self, now_s: float) -> None:
        with self.lock:
            s, spec, cal = self.servos, self.spec, self.cal
            torque = np.array([v.torque_enabled for v in s])
            damped = np.array([v.get(CT.POSITION_P_GAIN) == 0 for v in s])
            goal = cal.ticks_to_rad([v.get(CT.GOAL_POSITION) for v in s])
            kp = np.where(torque & ~damped, spec.kp, 0.0)
            kd = np.where(torque, spec.kd, 0.0)
            self.body.write(JointCommand(goal, CommandMode.POSITION, kp, kd))
            state = self.body.read()
            ticks = cal.rad_to_ticks(state.joint_pos_rad, clip=True)
            vel = cal.rad_s_to_velocity_units(state.joint_vel_rad_s)
            tau = state.joint_torque_nm if state.joint_torque_nm is not None else np.zeros(len(s))
            cur = cal.nm_to_current_units(tau)
            for servo, p, v, c in zip(s, ticks, vel, cur, strict=True):
                servo.set(CT.PRESENT_POSITION, int(p))
                servo.set(CT.PRESENT_VELOCITY, int(v))
                servo.set(CT.PRESENT_CURRENT, int(c))
            self.imu.set_measurement(cal.joint_to_servo_state(state))


class BoardCoupling:
    def __init__(self, board: VirtualBoard, cal: JointCalibration, body, lock: threading.Lock):
        self.board, self.cal, self.body, self.lock = board, cal, body, lock
        self.sync(0.0)

    def sync(self, now_s: float) -> None:
        with self.lock:
            self.body.write(self.cal.servo_to_joint_command(self.board.applied_command(now_s)))
            self.board.set_measurement(self.cal.joint_to_servo_state(self.body.read()))


class VirtualRobot:
    """Device models, ptys and servers for one robot; `paths` says where the host connects."""

    def __init__(self, body, spec: RobotSpec, config: HwConfig, *, baud: int,
                 faults: FaultSpec | None = None, seed: int = 0):
        faults = faults or FaultSpec()
        cal = config.calibration(spec)
        lock = threading.Lock()
        self.servers: list[VirtualDeviceServer] = []
        self.alerted, self.silent = False, None
        if config.protocol == "dynamixel":
            self.chain = VirtualServoChain(cal.bus_ids)
            silent = faults.extra.get("silent")
            if silent:
                self.chain.silent_ids.add(silent[0])
                self.silent = silent[0]
            self.imu_board = VirtualBoard(spec.n_joints)
            coupling = DynamixelCoupling(self.chain, self.imu_board, cal, body, spec, lock)
            bus = PtyPort()
            imu = PtyPort(link=bus.path.replace("tty0", "imu0"))
            self.servers.append(VirtualDeviceServer(self.chain, bus, baud=baud, faults=faults,
                                                    sync=coupling.sync, seed=seed))
            self.servers.append(VirtualDeviceServer(self.imu_board, imu, baud=config.imu.baud,
                                                    sync=coupling.sync, seed=seed + 1))
            self.paths = {"port": bus.path, "imu_port": imu.path}
            self.alert = faults.extra.get("alert")
        else:
            self.board = VirtualBoard(spec.n_joints)
            coupling = BoardCoupling(self.board, cal, body, lock)
            port = PtyPort()
            self.servers.append(VirtualDeviceServer(self.board, port, baud=baud, faults=faults,
                                                    sync=coupling.sync, seed=seed))
            self.paths = {"port": port.path}
            self.alert = None

    def serve(self, stop: threading.Event, duration_s: float | None = None,
              alert_after_s: float = 1.0) -> None:
        """Serve every device (one thread each) until `stop` is set or duration_s passes."""
        threads = [threading.Thread(target=s.serve, args=(stop, duration_s), daemon=True)
                   for s in self.servers]
        for t in threads:
            t.start()
        if self.alert is not None and not stop.wait(alert_after_s):
            dxl_id, bits = self.alert
            self.chain.alert(dxl_id, bits if bits is not None else 0x20)
            self.alerted = True
        for t in threads:
            t.join()

    def faults_injected(self, elapsed_s: float) -> str:
        """The faults the servers injected, per device: how many of each and how often (one
        every so many seconds), or "none"."""
        names = ["bus", "imu"] if len(self.servers) == 2 else ["board"]
        parts = []
        for name, server in zip(names, self.servers, strict=True):
            for kind, n in sorted(server.counts.items()):
                every = f", one every {elapsed_s / n:.2f} s" if elapsed_s > 0 else ""
                parts.append(f"{name} {kind} x{n}{every}")
        if self.alerted:
            parts.append(f"bus alert on servo {self.alert[0]} x1")
        if self.silent is not None:
            parts.append(f"bus servo {self.silent} silent throughout")
        return "; ".join(parts) or "none"

    def close(self) -> None:
        for s in self.servers:
            s.port.close()
