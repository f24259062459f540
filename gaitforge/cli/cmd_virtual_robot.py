"""`gaitforge virtual-robot`: a simulated robot, advanced in real time, behind the device models
of `hw_drivers` on pseudo-terminals. Deploying to it goes through the serial transport, the
protocol drivers and `HardwareBody`: the whole path a real robot takes, byte for byte.
"""

from __future__ import annotations

import signal
import threading
import time

from gaitforge.robots.configio import ConfigError

from .argtypes import baud, seconds


def register(sub) -> None:
    p = sub.add_parser("virtual-robot", help="serve a simulated robot over a serial protocol "
                       "on a pseudo-terminal (prints the device path)",
                       description="A physics body stepping in real time behind virtual "
                       "Dynamixel servos (plus an IMU board on a second pty) or our board, "
                       "with the baud rate's wire time and optional faults.")
    p.add_argument("--robot", default="servo_dog")
    p.add_argument("--protocol", choices=["dynamixel", "board"], default="dynamixel")
    p.add_argument("--baud", type=baud, help="default: the hardware YAML's")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="pybullet")
    p.add_argument("--hw", metavar="CONFIG", help="hardware YAML (default "
                   "configs/hw/ROBOT_PROTOCOL.yaml)")
    p.add_argument("--fault", metavar="SPEC", help="comma-separated faults: corrupt:P, "
                   "bad_crc:P, truncate:P, drop:P, late:P@MS, garbage:P, vanish:S, "
                   "unplug:S@D, silent:ID, alert:ID@BITS, each at most once (see "
                   "hw_drivers/virtual.py)")
    p.add_argument("--duration", type=seconds, help="stop after S seconds (default: until "
                   "Ctrl-C / SIGTERM)")
    p.add_argument("--dynamics", metavar="FILE", help="the simulated robot runs with this "
                   "dynamics file's dynamics, not the nominal ones: a robot with a reality gap")
    p.add_argument("--support", choices=["ground", "hung"], default="ground",
                   help="hung: the trunk is held in the air, as in a test stand (default ground)")
    p.add_argument("--video", metavar="FILE", help="record what the simulated robot did as "
                   "FILE (.mp4, needs the `video` extra, or .gif; 25 frames/s, rendered when "
                   "it stops; PyBullet renders without a display)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.hw_drivers.hwconfig import load_hw_config
    from gaitforge.hw_drivers.virtual import parse_faults
    from gaitforge.hw_drivers.virtual_robot import VirtualRobot
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.config import SimConfig
    from gaitforge.sim.dynamics import load_dynamics
    from gaitforge.sim.env import make_body
    from gaitforge.sim.robot_adapters import RealTimeSimBody, SessionRecord

    try:
        faults = parse_faults(args.fault)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    spec = load_robot_spec(args.robot)
    config = load_hw_config(args.hw or f"{args.robot}_{args.protocol}", spec=spec)
    if config.protocol != args.protocol:
        raise ConfigError(f"--hw {args.hw}: protocol is {config.protocol}, not {args.protocol}")
    check_servo_faults(faults.extra, config.protocol, config.calibration(spec).bus_ids)
    baud = args.baud or config.baud
    check_video_path(args.video)
    sim_body = make_body(spec, SimConfig(engine=args.engine), fixed_base=args.support == "hung")
    if args.dynamics:
        sim_body.set_dynamics(load_dynamics(args.dynamics, spec))
    record = SessionRecord(spec, 1.0 / VIDEO_FPS, keep_poses=bool(args.video))
    body = RealTimeSimBody(sim_body, record=record)
    vr = VirtualRobot(body, spec, config, baud=baud, faults=faults)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for name, path in vr.paths.items():
        print(f"{name}: {path}", flush=True)
    print(f"serving {args.robot} over {args.protocol} at {baud} baud ({args.engine}, real time, "
          f"{args.support}, dynamics {args.dynamics or 'nominal'}); Ctrl-C stops", flush=True)
    t0 = time.monotonic()
    try:
        vr.serve(stop, args.duration)
    except KeyboardInterrupt:
        stop.set()
    finally:
        vr.close()
        print(what_happened(body.body, record, vr.faults_injected(time.monotonic() - t0)),
              flush=True)
        try:
            if args.video:
                print(f"video: {write_session_video(body.body, record, args.video)}", flush=True)
        finally:
            body.body.close()
    return 0


VIDEO_FPS = 25


def check_video_path(path: str | None) -> None:
    """Refuse a --video path that cannot be written before the robot starts serving."""
    if not path:
        return
    from pathlib import Path

    from gaitforge.sim.render import VIDEO_FORMATS

    target = Path(path)
    if target.suffix.lower().lstrip(".") not in VIDEO_FORMATS:
        raise ConfigError(f"--video {path}: a video is .mp4 or .gif")
    if not target.parent.is_dir():
        raise ConfigError(f"--video {path}: the folder {target.parent} does not exist")


def what_happened(body, record, faults: str) -> str:
    """Lines a user reads to see whether the robot walked: time, where the trunk is, how far
    and which way it went, falls, the faults injected."""
    from gaitforge.sim.robot_adapters import trunk_summary

    s = record.summary()
    falls = "no falls" if not s["falls"] else (
        f"{s['falls']} fall(s) ({', '.join(f'{k} x{v}' for k, v in s['fall_reasons'].items())})"
        + ("; on the ground at the end" if s["fallen_at_end"] else "; standing at the end"))
    return (f"stopped after {body.time_s:.1f} s simulated: {trunk_summary(body)}\n"
            f"  walked {s['distance_m']:.2f} m from the start ({s['path_m']:.2f} m along the "
            f"way), heading change {s['heading_change_deg']:+.1f} deg, {falls}\n"
            f"  faults injected: {faults}")


def write_session_video(body, record, path: str) -> str:
    from gaitforge.sim.render import render_poses, write_video

    n = write_video(path, render_poses(body, record.poses), VIDEO_FPS)
    return f"{path} ({n} frames, {n / VIDEO_FPS:.1f} s at {VIDEO_FPS} frames/s)"


def check_servo_faults(extra: dict, protocol: str, ids) -> None:
    """silent:ID and alert:ID@BITS name a servo of this Dynamixel bus, or are refused (they
    would otherwise do nothing, or fail once the robot serves)."""
    for name, (dxl_id, _) in extra.items():
        if protocol != "dynamixel":
            raise ConfigError(f"--fault {name}:{dxl_id}: a Dynamixel servo's fault; the "
                              f"{protocol} protocol has no servo ids (use --protocol dynamixel)")
        if dxl_id not in ids:
            raise ConfigError(f"--fault {name}:{dxl_id}: no servo {dxl_id} on this bus (ids "
                              f"{', '.join(map(str, sorted(ids)))})")
