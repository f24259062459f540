"""`gaitforge train`, `eval` and `plot`: glue between configs, envs, agents and run folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gaitforge.config import RunConfig, agent_config, compose
from gaitforge.evaluation import evaluate_locomotion, evaluate_returns
from gaitforge.robots.configio import ConfigError, apply_overrides, deep_merge, from_dict, load_yaml
from gaitforge.runs import (
    RunLogger,
    append_jsonl,
    config_differences,
    load_config,
    new_run_dir,
    resolve_run,
    save_config,
)


def _configure_tensorflow() -> None:
    """One op on one core, two ops side by side: the fastest setting for our compiled update
    on 2 cores (bench/update_bench.py: 0.91 of a bare step, against 0.76 with TF's default).
    Process-wide, and only possible before TensorFlow runs its first op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already initialised (e.g. inside a test session)
        pass


def _env_fns(run: RunConfig):
    """(factory of one training env, its name) for the locomotion env or an external one."""
    if run.env_id:
        from gaitforge.sim.external import external_env_factory

        return external_env_factory(run.env_id), run.env_id.replace(":", "-")
    from gaitforge.sim.env import env_factory

    e = run.env
    return env_factory(e), f"{e.robot}-{e.task.name}-{e.sim.engine}"


def _evaluator(run: RunConfig, episodes: int, frames: list | None = None):
    if run.env_id:
        factory, _ = _env_fns(run)
        return lambda agent: evaluate_returns(lambda o: agent.act(o, deterministic=True),
                                              factory, episodes=episodes)
    ev = run.evaluation
    return lambda agent: evaluate_locomotion(
        lambda o: agent.act(o, deterministic=True), run.env, episodes=episodes,
        command=ev.command, episode_length_s=ev.episode_length_s, frames=frames)


def _build(run: RunConfig, run_dir: Path, source: str):
    from gaitforge.agents import make_agent
    from gaitforge.agents.trainer import Trainer
    from gaitforge.sim.vec_env import VecEnv

    _configure_tensorflow()
    name, agent_cfg = agent_config(run, source)
    factory, _ = _env_fns(run)
    t = run.train
    env = VecEnv([factory] * t.num_envs, workers=t.workers)
    probe_info = env.reset(seed=0)[1]
    critic_dim = probe_info["critic_obs"].shape[1] if "critic_obs" in probe_info else 0
    if getattr(agent_cfg, "asymmetric_critic", False) and not critic_dim:
        env.close()
        raise ConfigError(f"{source}: agent.asymmetric_critic needs privileged state "
                          "(critic_obs), which only the locomotion env provides")
    agent = make_agent(name, agent_cfg, env.single_observation_space.shape[0],
                       env.single_action_space.shape[0],
                       critic_obs_dim=critic_dim if agent_cfg.asymmetric_critic else 0,
                       seed=t.seed)
    logger = RunLogger(run_dir)
    trainer = Trainer(agent, env, t, run_dir / "checkpoints",
                      evaluate=_evaluator(run, t.eval_episodes), logger=logger)
    return trainer, env, logger


def train(config_path: str | None, overrides: list[str], resume: str | None,
          name: str | None, progress: bool = True) -> Path:
    if resume:
        run_dir = resolve_run(resume)
        saved = load_config(run_dir)
        data = deep_merge(saved, load_yaml(config_path)) if config_path else saved
        data = apply_overrides(data, overrides)
        # Only the step budget may change on resume (to train longer); anything else would
        # make the resumed run a different experiment.
        diff = [d for d in config_differences(saved, data)
                if not d.startswith("train.total_env_steps:")]
        if diff:
            raise ConfigError(f"{run_dir}: --resume with a config that does not match the "
                              "run's (only train.total_env_steps may change):\n  "
                              + "\n  ".join(diff))
        save_config(run_dir, data)
        source = str(run_dir / "config.yaml")
    else:
        data = compose(config_path, overrides)
        source = str(config_path or "configs/default.yaml")
    run = from_dict(RunConfig, data, source=source)
    _, agent_cfg = agent_config(run, source)  # reject bad input before creating anything
    if run.train.replay_capacity < agent_cfg.batch_size:
        raise ConfigError(f"{source}: train.replay_capacity ({run.train.replay_capacity}) is "
                          f"smaller than agent.batch_size ({agent_cfg.batch_size})")
    if not resume:
        _, stem = _env_fns(run)
        run_dir = new_run_dir(name, f"{stem}-{run.agent['name']}")
        save_config(run_dir, data)
    trainer, env, logger = _build(run, run_dir, source)
    try:
        if resume:
            folder = trainer.load_checkpoint()
            print(f"resumed {run_dir} from {folder.name} ({trainer.env_steps} env steps)")
        _train_with_progress(trainer, run_dir, progress)
    finally:
        env.close()
        logger.close()
    return run_dir


def _train_with_progress(trainer, run_dir: Path, progress: bool) -> None:
    from tqdm import tqdm

    total = trainer.config.total_env_steps
    bar = tqdm(total=total, initial=trainer.env_steps, unit="step", disable=not progress,
               dynamic_ncols=True, smoothing=0.05)
    seen_evals = len(trainer.history)

    def tick(t):
        nonlocal seen_evals
        bar.update(t.env_steps - bar.n)
        ret = t.recent_return()
        bar.set_postfix_str(("" if ret is None else f"return {ret:.2f} ") + f"upd {t.updates}",
                            refresh=False)
        for result in t.history[seen_evals:]:
            append_jsonl(run_dir / "eval.jsonl", {"time": time.time(), **result})
            bar.write("eval @ {env_steps}: ".format(**result) + ", ".join(
                f"{k} {v:.3f}" for k, v in result.items() if k != "env_steps"))
        seen_evals = len(t.history)

    trainer.train(progress=tick)
    bar.close()


def load_run_agent(run: str, engine: str | None = None):
    """(run folder, RunConfig, agent restored from the newest checkpoint, checkpoint folder)."""
    from gaitforge.agents import make_agent
    from gaitforge.agents.checkpoint import load_arrays
    from gaitforge.agents.trainer import latest_checkpoint

    _configure_tensorflow()
    run_dir = resolve_run(run)
    data = load_config(run_dir)
    if engine:
        data.setdefault("env", {}).setdefault("sim", {})["engine"] = engine
    cfg = from_dict(RunConfig, data, source=str(run_dir / "config.yaml"))
    folder = latest_checkpoint(run_dir / "checkpoints")
    state = load_arrays(folder / "agent.npz")
    name, agent_cfg = agent_config(cfg)
    dims = [int(d) for d in state["meta/dims"]]
    agent = make_agent(name, agent_cfg, dims[0], dims[1], critic_obs_dim=dims[2])
    agent.set_state(state, source=str(folder / "agent.npz"))
    return run_dir, cfg, agent, folder


def evaluate_run(run: str, episodes: int, engine: str | None, video: bool) -> dict:
    run_dir, cfg, agent, folder = load_run_agent(run, engine)
    frames: list | None = [] if video else None
    result = _evaluator(cfg, episodes, frames)(agent)
    result["checkpoint"] = str(folder)
    if video and frames:
        import imageio.v2 as imageio

        path = run_dir / f"eval-{folder.name}-{cfg.env.sim.engine}.gif"
        imageio.mimsave(path, frames, duration=1000 / 25, loop=0)
        result["video"] = str(path)
    return result


def plot_run(run: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = resolve_run(run)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()] if (run_dir / "metrics.jsonl").exists() else []
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()
             if line.strip()] if (run_dir / "eval.jsonl").exists() else []
    if not rows and not evals:
        raise ConfigError(f"{run_dir}: nothing to plot yet (no metrics.jsonl or eval.jsonl)")
    panels = [("train/episode_return", "training episode return"),
              ("loss/critic_loss", "critic loss"), ("loss/alpha", "SAC temperature"),
              ("perf/env_steps_per_s", "env steps/s")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (tag, title) in zip(axes.flat, panels, strict=False):
        pts = [(r["step"], r[tag]) for r in rows if tag in r]
        if pts:
            ax.plot(*np.array(pts).T)
        ax.set_title(title)
        ax.set_xlabel("env steps")
    for ax, key in zip(axes.flat[4:], ("return", "vx_tracking_error"), strict=False):
        pts = [(e["env_steps"], e[key]) for e in evals if key in e]
        if pts:
            ax.plot(*np.array(pts).T, marker="o")
        ax.set_title(f"evaluation: {key}")
        ax.set_xlabel("env steps")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    path = run_dir / "learning_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
