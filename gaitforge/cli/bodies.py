"""The bodies a verb can drive: a simulated robot (`--body sim:ENGINE [--dynamics FILE]
[--support hung|ground]`) or hardware over serial (`--hw CONFIG --port P [--imu-port I]`).
Shared by `deploy` and `excite`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gaitforge.robots.configio import ConfigError

SIM_BODIES = ("sim:pybullet", "sim:mujoco")
SUPPORTS = ("ground", "hung")


def add_body_arguments(p, *, default_support: str = "ground") -> None:
    p.add_argument("--body", default="sim:pybullet", metavar="sim:ENGINE",
                   help="sim:pybullet or sim:mujoco (default sim:pybullet)")
    p.add_argument("--dynamics", metavar="FILE", help="with --body: a dynamics file "
                   "(sim/dynamics.py names; e.g. from `gaitforge sysid`) instead of nominal")
    p.add_argument("--support", choices=SUPPORTS, default=default_support,
                   help="hung: the trunk is held in the air (a test stand); ground: standing "
                   f"(default {default_support}); recorded in the log")
    p.add_argument("--noise-seed", type=int, metavar="N", help="with --body: the sensors "
                   "read with training's sensor noise (joints, gyro, IMU tilt), drawn from "
                   "seed N; without it a simulated body reads exactly and every episode of a "
                   "policy is the same")
    p.add_argument("--realtime", action="store_true",
                   help="with --body: pace ticks on the wall clock (default: simulated time)")
    p.add_argument("--hw", metavar="CONFIG", help="drive hardware over serial instead: a "
                   "hardware YAML (configs/hw/servo_dog_dynamixel.yaml, or its name)")
    p.add_argument("--port", help="with --hw: the serial device or pyserial URL (overrides "
                   "the YAML's port), e.g. the path `gaitforge virtual-robot` prints")
    p.add_argument("--imu-port", help="with --hw on a Dynamixel bus: the IMU board's port")
    p.add_argument("--rt-setup", action="store_true", help="with --hw: ask the OS for "
                   "SCHED_FIFO, a pinned CPU, locked memory and 1 ns timer slack")


@dataclass
class Body:
    """A body ready for `control.runtime.deploy`, with what the log and report should say."""

    robot: object  # follows the Robot protocol
    metadata: dict
    tag: str  # for the log's file name
    on_tick: object = None  # a simulated robot's judge
    closers: list = field(default_factory=list)
    realtime: bool = False  # must run on the wall clock

    def close(self) -> None:
        for close in self.closers:
            close()


def make_body(args, spec, control_dt_s: float, command=(0.0, 0.0, 0.0),
              stride_hz: float = 0.0) -> Body:
    """The body the arguments name (see add_body_arguments); a simulated one judges the gait
    over whole strides of `stride_hz` (the policy's gait frequency; 0: none)."""
    if args.hw:
        for flag, value in (("--dynamics", args.dynamics), ("--noise-seed", args.noise_seed)):
            if value is not None:
                raise ConfigError(f"{flag} is for a simulated body (--body sim:ENGINE); real "
                                  "hardware has its own")
        return hardware_body(spec, args.hw, args.port, args.imu_port, args.support)
    if args.body not in SIM_BODIES:
        raise ConfigError(f"--body: unknown '{args.body}' (known: {', '.join(SIM_BODIES)}; "
                          "hardware comes with --hw)")
    engine = args.body.split(":", 1)[1]
    robot = sim_robot(spec, engine, control_dt_s, command, dynamics=args.dynamics,
                      support=args.support, stride_hz=stride_hz, noise_seed=args.noise_seed)
    meta = {"body": args.body, "support": args.support, "realtime": args.realtime,
            "noise_seed": -1 if args.noise_seed is None else args.noise_seed,
            "dynamics_file": args.dynamics or "",
            "dynamics": robot.body.params.to_file_dict()}
    return Body(robot, meta, f"sim-{engine}", robot.observe, [robot.close], args.realtime)


def sim_robot(spec, engine: str, control_dt_s: float, command=(0.0, 0.0, 0.0), *,
              dynamics: str | None = None, support: str = "ground", stride_hz: float = 0.0,
              noise_seed: int | None = None):
    """A SimulatedRobot for `engine` at the control period, with a dynamics file's dynamics
    (default: nominal), hung or standing, judging the gait against the velocity `command`
    over whole strides of `stride_hz`; with `noise_seed`, its sensors read with training's
    default noise drawn from that seed."""
    from gaitforge.sim.config import SimConfig
    from gaitforge.sim.dynamics import load_dynamics
    from gaitforge.sim.env import make_body as make_sim_body
    from gaitforge.sim.randomization import RandomizationConfig
    from gaitforge.sim.robot_adapters import SimulatedRobot

    try:
        sim = SimConfig(engine=engine, control_dt_s=control_dt_s)
    except ValueError as err:
        raise ConfigError(f"--body {engine}: {err}") from None
    params = load_dynamics(dynamics, spec) if dynamics else None
    body = make_sim_body(spec, sim, fixed_base=support == "hung")
    if params is not None:
        body.set_dynamics(params)
    noise = None if noise_seed is None else RandomizationConfig().noise
    return SimulatedRobot(body, command=command, stride_hz=stride_hz, noise=noise,
                          seed=noise_seed or 0)


def hardware_body(spec, hw: str, port: str | None, imu_port: str | None,
                  support: str = "ground") -> Body:
    """A HardwareBody for a hardware YAML and its ports."""
    from gaitforge.hw_drivers.body import HardwareBody
    from gaitforge.hw_drivers.hwconfig import load_hw_config

    config = load_hw_config(hw, port=port, spec=spec)
    if imu_port:
        config = dataclasses.replace(config, imu=dataclasses.replace(config.imu, port=imu_port))
    transport = open_port(config.port, config.baud,
                          "--port" if port else f"{hw} port (no --port given)")
    imu = None
    if config.protocol == "dynamixel":
        try:
            imu = open_port(config.imu.port, config.imu.baud,
                            "--imu-port" if imu_port else f"{hw} imu.port (no --imu-port given)")
        except ConfigError:
            transport.close()
            raise
    body = HardwareBody(spec, config, transport, imu_transport=imu)
    metadata = {"body": f"hw:{config.protocol}:{config.port}", "support": support,
                "hw_config": dataclasses.asdict(config)}
    return Body(body, metadata, f"hw-{config.protocol}",
                closers=[t.close for t in (transport, imu) if t is not None], realtime=True)


def open_port(port: str, baud: int, named_by: str):
    """A SerialTransport; a port that does not open is a ConfigError that says which option
    (or which hardware YAML) named it, the port, and what to check."""
    from gaitforge.hw_drivers.transport import SerialTransport, TransportError

    try:
        return SerialTransport(port, baud)
    except TransportError as err:
        raise ConfigError(f"{named_by}: {err}") from None
