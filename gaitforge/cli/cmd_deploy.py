"""`gaitforge deploy BUNDLE --body sim:ENGINE | --hw CONFIG --port PORT`: one episode of the
deploy runtime (`control.deploy`: loop, safety, logger) on a simulated body or on hardware.

The simulated body is driven like hardware (`sim.robot_adapters.SimulatedRobot`: a write
applies the command and advances physics one control period), with nominal dynamics and no
sensor noise; tracking error and falls come from the simulator's privileged state, which the
runtime never sees. On hardware, `HardwareBody` speaks the serial protocol of the hardware
YAML, always on the wall clock.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError

BODIES = ("sim:pybullet", "sim:mujoco")


def register(sub) -> None:
    p = sub.add_parser("deploy", help="run a bundle in the real-time deploy loop (read, "
                       "observation, actor, safety, write, log) against a body",
                       description="Runs the deploy runtime: soft start to the default pose, "
                       "DURATION s of policy, then damping and torque off. Every tick is "
                       "logged (see `gaitforge logs inspect`). Exit 0 only when the episode "
                       "ran its full duration under the policy; otherwise exit 1 and the "
                       "outcome says why (fell, estop, watchdog, lost_link, interrupted, ...).")
    p.add_argument("bundle", help="policy bundle folder (from `gaitforge export`)")
    p.add_argument("--body", default="sim:pybullet", metavar="sim:ENGINE",
                   help="sim:pybullet or sim:mujoco (default sim:pybullet)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of policy control after the soft start (default 10)")
    p.add_argument("--command", default="0.3,0,0", metavar="VX,VY,YAW",
                   help="velocity command, m/s, m/s, rad/s (default 0.3,0,0)")
    p.add_argument("--realtime", action="store_true",
                   help="pace ticks on the wall clock (default: simulated time, fast)")
    p.add_argument("--log-dir", help="where episode logs go (default: next to the bundle, "
                   "deploy-logs/)")
    p.add_argument("--hw", metavar="CONFIG", help="drive hardware over serial instead: a "
                   "hardware YAML (configs/hw/servo_dog_dynamixel.yaml, or its name)")
    p.add_argument("--port", help="with --hw: the serial device or pyserial URL (overrides "
                   "the YAML's port), e.g. the path `gaitforge virtual-robot` prints")
    p.add_argument("--imu-port", help="with --hw on a Dynamixel bus: the IMU board's port")
    p.add_argument("--rt-setup", action="store_true", help="with --hw: ask the OS for "
                   "SCHED_FIFO, a pinned CPU, locked memory and 1 ns timer slack")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.control.deploy import clock_and_sleep
    from gaitforge.control.runtime import deploy, load_runtime, new_log_path

    command = parse_command(args.command)
    if not args.hw and args.body not in BODIES:
        raise ConfigError(f"--body: unknown '{args.body}' (known: {', '.join(BODIES)}; "
                          "hardware comes with --hw)")
    clock, sleep = clock_and_sleep(bool(args.hw) or args.realtime)
    runtime = load_runtime(args.bundle, clock)
    folder = Path(args.log_dir) if args.log_dir else runtime.bundle.path.parent / "deploy-logs"
    if args.hw:
        body, metadata, closers = hardware_body(runtime.spec, args.hw, args.port, args.imu_port)
        on_tick, tag = None, f"hw-{metadata['hw_config']['protocol']}"
        rt = _realtime_setup() if args.rt_setup else None
    else:
        body = sim_robot(runtime.spec, args.body.split(":", 1)[1], runtime.bundle.control_dt_s,
                         command)
        metadata, closers = {"body": args.body, "realtime": args.realtime}, [body.close]
        on_tick, tag, rt = body.observe, f"sim-{args.body.split(':', 1)[1]}", None
    try:
        report = deploy(runtime, body, duration_s=args.duration, command=command, clock=clock,
                        sleep=sleep, log_path=new_log_path(folder, tag), metadata=metadata,
                        on_tick=on_tick)
    finally:
        for close in closers:
            close()
    if args.hw:
        report.update(body=metadata["body"], hardware=body.counters,
                      realtime="; ".join(rt.lines()) if rt else "not requested")
    print(f"{report['outcome']}: {report['reason']}")
    for key, value in report.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0 if report["outcome"] == "completed" else 1


def sim_robot(spec, engine: str, control_dt_s: float, command=(0.0, 0.0, 0.0)):
    """A SimulatedRobot for `engine` with nominal dynamics at the bundle's control period,
    judging the gait against the velocity `command`."""
    from gaitforge.sim.config import SimConfig
    from gaitforge.sim.env import make_body
    from gaitforge.sim.robot_adapters import SimulatedRobot

    try:
        sim = SimConfig(engine=engine, control_dt_s=control_dt_s)
    except ValueError as err:
        raise ConfigError(f"--body {engine}: {err}") from None
    return SimulatedRobot(make_body(spec, sim), command=command)


def hardware_body(spec, hw: str, port: str | None, imu_port: str | None):
    """(HardwareBody, log metadata, [close functions]) for a hardware YAML and its ports."""
    from gaitforge.hw_drivers.body import HardwareBody
    from gaitforge.hw_drivers.hwconfig import load_hw_config
    from gaitforge.hw_drivers.transport import SerialTransport

    config = load_hw_config(hw, port=port, spec=spec)
    if imu_port:
        config = dataclasses.replace(config, imu=dataclasses.replace(config.imu, port=imu_port))
    transport = SerialTransport(config.port, config.baud)
    imu = SerialTransport(config.imu.port, config.imu.baud) \
        if config.protocol == "dynamixel" else None
    body = HardwareBody(spec, config, transport, imu_transport=imu)
    metadata = {"body": f"hw:{config.protocol}:{config.port}",
                "hw_config": dataclasses.asdict(config)}
    return body, metadata, [t.close for t in (transport, imu) if t is not None]


def _realtime_setup():
    from gaitforge.control.loop import setup_realtime

    return setup_realtime()


def parse_command(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ConfigError(f"--command: expected vx,vy,yaw (three numbers), got '{text}'")
    return values
