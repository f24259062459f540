"""The `gaitforge` command."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from gaitforge.robots.configio import ConfigError


def cmd_envs(args) -> int:
    from gaitforge.config import TASKS
    from gaitforge.robots.spec import available_robots, load_robot_spec
    from gaitforge.sim.config import ENGINES

    print(f"{'robot':14s} {'joints':>6s} {'mass kg':>8s}  tasks          engines")
    for name in available_robots():
        spec = load_robot_spec(name)
        print(f"{name:14s} {spec.n_joints:6d} {spec.nominal_mass_kg:8.2f}  "
              f"{', '.join(TASKS):14s} {', '.join(ENGINES)}")
    print("\nany robot x task x engine combines: "
          "gaitforge check ROBOT --engine E, gaitforge train --set env.robot=ROBOT ...")
    return 0


def cmd_check(args) -> int:
    from gaitforge.config import env_config
    from gaitforge.control.policy_io import projected_gravity
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.robots.types import JointCommand
    from gaitforge.sim.env import make_body

    cfg = env_config(args.robot, "stand", args.engine,
                     [f"env.sim.terrain.kind={args.terrain}"])
    spec = load_robot_spec(args.robot)
    body = make_body(spec, cfg.sim)
    body.configure()
    body.activate()
    start = np.array([0.0, 0.0, body.spawn_height()])
    body.reset(base_pos_m=start, base_quat_wxyz=[1, 0, 0, 0], joint_pos_rad=spec.default_pose_rad)
    hold = JointCommand(position_rad=spec.default_pose_rad)  # through the servo model
    steps = int(round(args.duration / cfg.sim.control_dt_s))
    fell = False
    for _ in range(steps):
        body.write(hold)
        body.step()
        state = body.read()
        tilt = np.arccos(np.clip(-projected_gravity(state.imu_quat_wxyz)[2], -1, 1))
        pos = state.privileged.base_pos_m
        height = pos[2] - body.ground_height(pos[0], pos[1])
        if state.privileged.trunk_contact or tilt > 0.5 or height < 0.5 * spec.standing_height_m:
            fell = True
    drift = np.linalg.norm(pos[:2] - start[:2])
    body.close()
    print(f"robot {args.robot}  engine {args.engine}  terrain {args.terrain}  "
          f"{args.duration:.1f} s in the default pose")
    print(f"  trunk height  {height:.3f} m  (spec standing height {spec.standing_height_m:.3f} m)")
    print(f"  drift         {drift * 1000:.1f} mm")
    print(f"  tilt          {np.degrees(tilt):.1f} deg")
    print(f"  fell          {'YES' if fell else 'no'}")
    return 1 if fell else 0


def cmd_train(args) -> int:
    from gaitforge.training import train

    run_dir = train(args.config, args.set, args.resume, args.name, progress=not args.no_progress)
    print(f"run folder: {run_dir}  (gaitforge eval {run_dir} --video; gaitforge plot {run_dir})")
    return 0


def cmd_eval(args) -> int:
    from gaitforge.training import evaluate_run

    result = evaluate_run(args.run, args.episodes, args.engine, args.video)
    for key, value in result.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0


def cmd_plot(args) -> int:
    from gaitforge.training import plot_run

    print(plot_run(args.run))
    return 0


def cmd_export(args) -> int:
    from gaitforge.agents.export import ExportError
    from gaitforge.export import export_run

    try:
        bundle, parity = export_run(args.run, args.out, args.overwrite)
    except ExportError as err:
        print(f"gaitforge: export failed, no bundle written: {err}", file=sys.stderr)
        return 2
    print(f"bundle: {bundle.path}")
    print(f"  robot {bundle.robot}, {bundle.obs_dim} observations -> "
          f"{len(bundle.action_layout['joint_order'])} joint targets every "
          f"{bundle.control_dt_s * 1000:g} ms")
    print(f"  parity TFLite ({parity['backend']}) vs TF over {parity['n']} observations: "
          f"max |diff| {parity['max_abs_diff']:.2g}")
    return 0


def cmd_deploy(args) -> int:
    from gaitforge.deploy import deploy_sim, parse_command

    command = parse_command(args.command)
    if args.hw:
        from gaitforge.hardware import deploy_hw

        report = deploy_hw(args.bundle, args.hw, port=args.port, imu_port=args.imu_port,
                           duration_s=args.duration, command=command, log_dir=args.log_dir,
                           realtime_setup=args.rt_setup)
    else:
        report = deploy_sim(args.bundle, args.body, duration_s=args.duration, command=command,
                            realtime=args.realtime, log_dir=args.log_dir)
    for key, value in report.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 1 if report.get("fell") or report["end_phase"] != "finished" else 0


def cmd_virtual_robot(args) -> int:
    from gaitforge.hardware import virtual_robot

    return virtual_robot(args.robot, args.protocol, engine=args.engine, baud=args.baud,
                         fault=args.fault, duration_s=args.duration, hw=args.hw)


def cmd_logs(args) -> int:
    from gaitforge.deploy import inspect_log

    print(inspect_log(args.path))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaitforge",
        description="Train legged-robot gaits in PyBullet/MuJoCo, deploy them over serial.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("envs", help="list robots x tasks x engines")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("check", help="stand a robot in its default pose and report how it stood")
    p.add_argument("robot", help="robot name (see `gaitforge envs`)")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="pybullet")
    p.add_argument("--terrain", choices=["flat", "rough"], default="flat")
    p.add_argument("--duration", type=float, default=2.0, help="seconds to stand (default 2)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train a policy (default: servo_dog walks in PyBullet)",
                       description="Train with SAC or TD3. Without CONFIG, configs/default.yaml; "
                       "robot, task and engine overlays from configs/ compose underneath.")
    p.add_argument("config", nargs="?", help="YAML run config (overlay on the defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.total_env_steps=50000 "
                   "--set env.sim.engine=mujoco --set agent.name=td3 (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("--name", help="run folder name under runs/ (default: robot-task-engine-"
                   "agent-time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's last checkpoint with the deterministic "
                       "actor: tracking error, fall rate, mean return")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--engine", choices=["pybullet", "mujoco"],
                   help="evaluate in this engine instead of the one trained in")
    p.add_argument("--video", action="store_true",
                   help="write a GIF of the first episode (offscreen: PyBullet TinyRenderer)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write a run's actor as a policy bundle (TFLite + "
                       "SavedModel + bundle.json), checked for parity")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.add_argument("--out", help="bundle folder (default: RUN/bundle)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("deploy", help="run a bundle in the real-time deploy loop (read, "
                       "observation, actor, safety, write, log) against a body",
                       description="Runs the deploy runtime: soft start to the default pose, "
                       "DURATION s of policy, then damping and torque off. Every tick is "
                       "logged (see `gaitforge logs inspect`). Exit 1 if the robot fell.")
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
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("virtual-robot", help="serve a simulated robot over a serial protocol "
                       "on a pseudo-terminal (prints the device path)",
                       description="A physics body stepping in real time behind virtual "
                       "Dynamixel servos (plus an IMU board on a second pty) or our board, "
                       "with the baud rate's wire time and optional faults.")
    p.add_argument("--robot", default="servo_dog")
    p.add_argument("--protocol", choices=["dynamixel", "board"], default="dynamixel")
    p.add_argument("--baud", type=int, help="default: the hardware YAML's")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="pybullet")
    p.add_argument("--hw", metavar="CONFIG", help="hardware YAML (default "
                   "configs/hw/ROBOT_PROTOCOL.yaml)")
    p.add_argument("--fault", metavar="SPEC", help="comma-separated faults: corrupt:P, "
                   "bad_crc:P, truncate:P, drop:P, late:P@MS, garbage:P, vanish:S, "
                   "unplug:S@D, silent:ID, alert:ID@BITS (see hw_drivers/virtual.py)")
    p.add_argument("--duration", type=float, help="stop after S seconds (default: until "
                   "Ctrl-C / SIGTERM)")
    p.set_defaults(func=cmd_virtual_robot)

    p = sub.add_parser("logs", help="episode logs written by `gaitforge deploy`")
    logs = p.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    q = logs.add_parser("inspect", help="summary of one episode log")
    q.add_argument("path", help="a .gflog file")
    q.set_defaults(func=cmd_logs)

    p = sub.add_parser("plot", help="learning curves of a run as PNG")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    os.environ.setdefault("MUJOCO_GL", "disable")  # no display; PyBullet renders offscreen
    args = build_parser().parse_args(argv)
    from gaitforge.agents.checkpoint import CheckpointError
    from gaitforge.control.bundle import BundleError
    from gaitforge.control.logger import LogFormatError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, BundleError, LogFormatError) as err:
        print(f"gaitforge: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
