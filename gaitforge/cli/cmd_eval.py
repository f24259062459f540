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
                   help="write a GIF of the first episode (offscreen: PyBullet TinyRenderer)")
    p.set_defaults(func=run)


def run(args) -> int:
    result = evaluate_run(args.run, args.episodes, args.engine, args.video)
    for key, value in result.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0


def evaluate_run(run: str, episodes: int, engine: str | None, video: bool) -> dict:
    from .run_config import evaluator
    from .run_folders import load_run_agent

    run_dir, cfg, agent, folder = load_run_agent(run, engine)
    frames: list | None = [] if video else None
    result = evaluator(cfg, episodes, frames)(agent)
    result["checkpoint"] = str(folder)
    if video and frames:
        import imageio.v2 as imageio

        path = run_dir / f"eval-{folder.name}-{cfg.env.sim.engine}.gif"
        imageio.mimsave(path, frames, duration=1000 / 25, loop=0)
        result["video"] = str(path)
    return result
