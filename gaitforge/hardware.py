"""`gaitforge virtual-robot` and `gaitforge deploy BUNDLE --hw CONFIG --port PATH`.

The virtual robot is a simulated body, advanced in real time, behind the device models of
`hw_drivers` on pseudo-terminals. Deploying to it goes through the serial transport,
the protocol drivers and `HardwareBody`: the whole path a real robot takes, byte for byte.
"""

from __future__ import annotations

import signal
import threading
import time

from gaitforge.robots.configio import ConfigError
from gaitforge.robots.spec import load_robot_spec


class RealTimeSimBody:
    """A SimBody whose physics catches up with the wall clock whenever it is read. Falls
    behind by more than `max_lag_s` (a stalled process) are skipped, not replayed."""

    def __init__(self, body, *, clock=time.monotonic, max_lag_s: float = 0.1):
        self.body, self.clock, self.max_lag_s = body, clock, max_lag_s
        body.configure()
        spec = body.spec
        body.reset(base_pos_m=[0.0, 0.0, body.spawn_height()], base_quat_wxyz=[1, 0, 0, 0],
                   joint_pos_rad=spec.default_pose_rad)
        body.activate()
        self.dt = body.sim.sim_dt_s
        self.t0 = clock()
        self.skipped_s = 0.0

    def configure(self):
        pass

    def activate(self):
        pass

    def deactivate(self):
        pass

    def write(self, command) -> None:
        self.body.write(command)

    def read(self):
        target = self.clock() - self.t0 - self.skipped_s
        lag = target - self.body.time_s
        if lag > self.max_lag_s:
            self.skipped_s += lag - self.max_lag_s
            target -= lag - self.max_lag_s
        steps = int((target - self.body.time_s) / self.dt)
        if steps > 0:
            self.body.step(steps)
        return self.body.read()


def virtual_robot(robot: str, protocol: str, *, engine: str, baud: int | None,
                  fault: str | None, duration_s: float | None, hw: str | None = None) -> int:
    from gaitforge.config import env_config
    from gaitforge.hw_drivers.hwconfig import load_hw_config
    from gaitforge.hw_drivers.virtual import parse_faults
    from gaitforge.hw_drivers.virtual_robot import VirtualRobot
    from gaitforge.sim.env import make_body

    try:
        faults = parse_faults(fault)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    spec = load_robot_spec(robot)
    config = load_hw_config(hw or f"{robot}_{protocol}", spec=spec)
    if config.protocol != protocol:
        raise ConfigError(f"--hw {hw}: protocol is {config.protocol}, not {protocol}")
    sim = env_config(robot, "walk", engine).sim
    body = RealTimeSimBody(make_body(spec, sim))
    vr = VirtualRobot(body, spec, config, baud=baud or config.baud, faults=faults)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for name, path in vr.paths.items():
        print(f"{name}: {path}", flush=True)
    print(f"serving {robot} over {protocol} at {baud or config.baud} baud "
          f"({engine}, real time); Ctrl-C stops", flush=True)
    try:
        vr.serve(stop, duration_s)
    except KeyboardInterrupt:
        stop.set()
    finally:
        pos = body.read().privileged.base_pos_m
        print(f"stopped after {body.body.time_s:.1f} s simulated: trunk at x {pos[0]:+.3f} m, "
              f"y {pos[1]:+.3f} m, height {pos[2]:.3f} m; faults injected: "
              f"{[s.counts for s in vr.servers]}", flush=True)
        vr.close()
        body.body.close()
    return 0


def deploy_hw(bundle_path: str, hw: str, *, port: str | None, imu_port: str | None,
              duration_s: float, command, log_dir: str | None, realtime_setup: bool) -> dict:
    """The deploy runtime on a HardwareBody over serial (always on the wall clock)."""
    import dataclasses
    from pathlib import Path

    import numpy as np

    from gaitforge.control.deploy import Deployment, clock_and_sleep, run_episode
    from gaitforge.control.logger import EpisodeLogger
    from gaitforge.control.loop import setup_realtime
    from gaitforge.deploy import log_path, runtime_parts
    from gaitforge.hw_drivers.body import HardwareBody
    from gaitforge.hw_drivers.hwconfig import load_hw_config
    from gaitforge.hw_drivers.transport import SerialTransport

    clock, sleep = clock_and_sleep(True)
    parts = runtime_parts(bundle_path, clock)
    bundle, spec, runner = parts.bundle, parts.spec, parts.runner
    config = load_hw_config(hw, port=port, spec=spec)
    if imu_port:
        config = dataclasses.replace(config, imu=dataclasses.replace(config.imu, port=imu_port))
    transport = SerialTransport(config.port, config.baud)
    imu = SerialTransport(config.imu.port, config.imu.baud) \
        if config.protocol == "dynamixel" else None
    body = HardwareBody(spec, config, transport, imu_transport=imu)
    rt = setup_realtime() if realtime_setup else None
    path = log_path(log_dir, Path(bundle.path), f"hw-{config.protocol}")
    metadata = {"robot": spec.name, "body": f"hw:{config.protocol}:{config.port}",
                "bundle_hash": bundle.sha256, "bundle": str(bundle.path),
                "command": list(map(float, command)), "hw_config": dataclasses.asdict(config),
                "control_dt_s": bundle.control_dt_s}
    logger = EpisodeLogger(path, metadata, n_joints=spec.n_joints, obs_dim=parts.builder.size)
    outcome = "error"
    try:
        deployment = Deployment(body, runner, parts.builder, parts.mapper, parts.safety,
                                control_dt_s=bundle.control_dt_s, command=command,
                                logger=logger)
        result = run_episode(deployment, duration_s, clock, sleep)
        outcome = result.end_phase
    finally:
        for kind_time, kind, detail in body.events:
            logger.log_event(-1, kind, detail, kind_time)
        logger.close({"outcome": outcome, **body.counters})
        transport.close()
        if imu is not None:
            imu.close()
    return {"body": metadata["body"], "policy_s": result.policy_ticks * bundle.control_dt_s,
            "end_phase": result.end_phase, "safety_events": result.safety_counts,
            "hardware": body.counters, "read_errors": result.read_errors,
            "work_p50_us": float(np.percentile(result.work_s, 50) * 1e6),
            "work_p99_us": float(np.percentile(result.work_s, 99) * 1e6),
            "overruns": result.loop.get("overruns", 0),
            "realtime": "; ".join(rt.lines()) if rt else "not requested", "log": str(path)}
