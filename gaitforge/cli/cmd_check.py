"""`gaitforge check ROBOT`: stand a robot in its default pose and report how it stood."""

from __future__ import annotations

import numpy as np

from .argtypes import seconds


def register(sub) -> None:
    p = sub.add_parser("check", help="stand a robot in its default pose and report how it stood")
    p.add_argument("robot", help="robot name (see `gaitforge envs`)")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="pybullet")
    p.add_argument("--terrain", choices=["flat", "rough"], default="flat")
    p.add_argument("--duration", type=seconds, default=2.0, help="seconds to stand (default 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.control.policy_io import trunk_tilt_rad
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.robots.types import JointCommand
    from gaitforge.sim.env import make_body
    from gaitforge.sim.tasks import fall_reason
    from gaitforge.sim.terrain import ground_height

    from .run_config import env_config

    cfg = env_config(args.robot, "stand", args.engine, [f"env.sim.terrain.kind={args.terrain}"])
    spec = load_robot_spec(args.robot)
    body = make_body(spec, cfg.sim)
    body.configure()
    body.activate()
    body.reset_standing()
    hold = JointCommand(position_rad=spec.default_pose_rad)  # through the servo model
    start = body.read().privileged.base_pos_m.copy()
    fell = ""
    for _ in range(max(1, round(args.duration / cfg.sim.control_dt_s))):  # one tick at least
        body.write(hold)
        body.step()
        state = body.read()
        pos = state.privileged.base_pos_m
        ground = ground_height(body.terrain, pos[0], pos[1])
        fell = fell or fall_reason(state, ground, spec, cfg.task.termination)
    body.close()
    print(f"robot {args.robot}  engine {args.engine}  terrain {args.terrain}  "
          f"{args.duration:.1f} s in the default pose")
    print(f"  trunk height  {pos[2] - ground:.3f} m  "
          f"(spec standing height {spec.standing_height_m:.3f} m)")
    print(f"  drift         {np.linalg.norm(pos[:2] - start[:2]) * 1000:.1f} mm")
    print(f"  tilt          {np.degrees(trunk_tilt_rad(state.imu_quat_wxyz)):.1f} deg")
    print(f"  fell          {'YES (' + fell + ')' if fell else 'no'}")
    return 1 if fell else 0
