"""`gaitforge eval RUN`: the deterministic actor of a run's policy checkpoint (its newest; a
fine-tune's best), judged."""

from __future__ import annotations

from .argtypes import count


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's last checkpoint with the deterministic "
                       "actor: tracking error, fall rate, mean return")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.add_argument("--episodes", type=count, default=5,
                   help="episodes to evaluate (default 5)")
    p.add_argument("--engine", choices=["pybullet", "mujoco"],
                   help="evaluate in this engine instead of the one trained in")
    p.add_argument("--grid", action="store_true",
                   help="judge every cell of the robot's command grid (`evaluation.grid` in "
                   "configs/robots/ROBOT.yaml: forward, backward, standing, turning, side "
                   "steps...), --episodes each; walking needs every cell walking")
    p.add_argument("--video", action="store_true",
                   help="write a video of the first episode beside the checkpoint's run: MP4 "
                   "at the control rate (needs the `video` extra: imageio-ffmpeg, which ships "
                   "its own ffmpeg), or GIF with --video-format gif (offscreen: PyBullet "
                   "TinyRenderer; MuJoCo needs MUJOCO_GL=egl or osmesa)")
    p.add_argument("--video-format", choices=VIDEO_FORMATS, default="mp4",
                   help="with --video: mp4 (default, one frame per control step) or gif "
                   "(every second control step, as before)")
    p.set_defaults(func=run)


VIDEO_FORMATS = ("mp4", "gif")


def run(args) -> int:
    if args.grid:
        return print_grid(evaluate_run_grid(args.run, args.episodes, args.engine))
    if args.video and args.video_format == "mp4":
        from gaitforge.control.optional import require

        require("imageio_ffmpeg", "video", "gaitforge eval --video (MP4)")  # before evaluating
    result = evaluate_run(args.run, args.episodes, args.engine,
                          args.video_format if args.video else None)
    for key, value in result.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0


GRID_COLUMNS = {"vx_tracking_error": "vx err m/s", "vy_tracking_error": "vy err m/s",
                "yaw_rate_error": "yaw err rad/s", "fall_rate": "falls",
                "rate_limited_share": "rate-limited"}


def evaluate_run_grid(run: str, episodes: int, engine: str | None) -> dict:
    """{cell: metrics} of a run's policy checkpoint over its robot's command grid."""
    from .run_config import evaluator
    from .run_folders import load_run_agent

    _, cfg, agent, _ = load_run_agent(run, engine)
    return evaluator(cfg, episodes, grid=True)(agent)


def print_grid(results: dict) -> int:
    """One row per cell and a last line `grid: walking on every cell` or `grid: not walking
    on: cells` (bench/time_to_walk.py reads it)."""
    from gaitforge.sim.evaluation import walking, walking_on_grid

    print(f"  {'cell':12s} {'command':>14s} "
          + " ".join(f"{c:>13s}" for c in GRID_COLUMNS.values()))
    for name, r in results.items():
        command = ",".join(f"{c:g}" for c in r["command"])
        print(f"  {name:12s} {command:>14s} " + " ".join(f"{r[c]:13.3f}" for c in GRID_COLUMNS)
              + ("  walking" if walking(r) else ""))
    failed = walking_on_grid(results)
    print("grid: walking on every cell" if not failed else
          f"grid: not walking on: {', '.join(failed)}")
    return 0


def evaluate_run(run: str, episodes: int, engine: str | None, video: str | None) -> dict:
    """The evaluation of a run's policy checkpoint; with `video` ("mp4" or "gif"), a video of
    the first episode in the run folder (MP4 at the control rate; GIF at half of it)."""
    from gaitforge.sim.render import write_video

    from .run_config import evaluator
    from .run_folders import load_run_agent

    run_dir, cfg, agent, folder = load_run_agent(run, engine)
    frames: list | None = [] if video else None
    result = evaluator(cfg, episodes, frames)(agent)
    result["checkpoint"] = str(folder)
    if video and frames:
        fps = 1.0 / cfg.env.sim.control_dt_s
        if video == "gif":  # half the frames: a GIF's delays are in 1/100 s, and smaller
            frames, fps = frames[::2], fps / 2
        path = run_dir / f"eval-{folder.name}-{cfg.env.sim.engine}.{video}"
        n = write_video(path, frames, fps)
        result["video"] = f"{path} ({n} frames at {fps:g} frames/s)"
    return result
