"""`gaitforge eval RUN`: the deterministic actor of a run's newest checkpoint, judged."""

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
    if args.video and args.video_format == "mp4":
        from gaitforge.control.optional import require

        require("imageio_ffmpeg", "video", "gaitforge eval --video (MP4)")  # before evaluating
    result = evaluate_run(args.run, args.episodes, args.engine,
                          args.video_format if args.video else None)
    for key, value in result.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0


def evaluate_run(run: str, episodes: int, engine: str | None, video: str | None) -> dict:
    """The evaluation of a run's newest checkpoint; with `video` ("mp4" or "gif"), a video of
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
