"""`gaitforge train`: compose a run config, build the vectorised env and the agent, and train
into a run folder (or resume one)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from gaitforge.robots.configio import ConfigError, apply_overrides, deep_merge, from_dict, load_yaml

from .run_config import RunConfig, compose, env_fns, evaluator, upgrade_saved_config
from .run_folders import (
    RunLogger,
    config_differences,
    configure_tensorflow,
    create_run_dir,
    cut_logs,
    load_config,
    resolve_run,
    run_dir_for,
    save_config,
)


def register(sub) -> None:
    p = sub.add_parser("train", help="train a policy (default: servo_dog walks in PyBullet)",
                       description="Train with SAC or TD3. Without CONFIG, configs/default.yaml; "
                       "robot, task and engine overlays from configs/ compose underneath.")
    p.add_argument("config", nargs="?", help="YAML run config (overlay on the defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.total_env_steps=50000 "
                   "--set env.sim.engine=mujoco --set agent.name=td3 (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument("--dynamics", metavar="FILE", help="train around a dynamics file (e.g. from "
                   "`gaitforge sysid`): its values become the nominal dynamics randomisation "
                   "is centred on, and its latency the centre of the latency range")
    p.add_argument("--name", help="run folder name under runs/ (default: robot-task-engine-"
                   "agent-time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="collect on Ray "
                   "(extra [ray]): ray.collectors actors, learning here; ADDRESS: a cluster's "
                   "HEAD:PORT or 'auto' (default: start Ray on this machine)")
    p.set_defaults(func=run)


def run(args) -> int:
    overrides = [*dynamics_overrides(args.dynamics, args.config, args.set), *args.set] \
        if args.dynamics else args.set
    if args.ray is not None:  # the run config's ray: section (gaitforge/cli/ray_train.py)
        overrides = [*overrides, "ray.enabled=true", f"ray.address={json.dumps(args.ray)}"]
    run_dir = train(args.config, overrides, args.resume, args.name,
                    progress=not args.no_progress)
    print(f"run folder: {run_dir}  (gaitforge eval {run_dir} --video; gaitforge plot {run_dir})")
    return 0


def dynamics_overrides(path: str, config_path: str | None, user_sets: list[str]) -> list[str]:
    """--set items putting a dynamics file under env.dynamics (values checked against the
    robot), recording where it came from, and centring the latency range on its latency."""
    from gaitforge.control.bundle import file_sha256
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.dynamics import from_mapping
    from gaitforge.sim.randomization import RandomizationConfig

    data = compose(config_path, user_sets)
    spec = load_robot_spec(data["env"]["robot"])
    loaded = load_yaml(path)
    values = {k: v for k, v in loaded.items() if k != "provenance"}
    from_mapping(values, spec, source=path)
    provenance = loaded.get("provenance")
    identified = provenance.get("engine") if isinstance(provenance, dict) else None
    engine = data["env"].get("sim", {}).get("engine")
    if identified and engine and identified != engine:
        print(f"gaitforge: note: {path} was identified in {identified} and this run simulates "
              f"{engine}, where the same values behave differently (joint friction, contacts): "
              f"`--set env.sim.engine={identified}` simulates where it was identified, `gaitforge "
              f"sysid --engine {engine}` identifies it for {engine}", file=sys.stderr)
    lo, hi = data["env"].get("randomization", {}).get("latency_s",
                                                      RandomizationConfig().latency_s)
    mid = (lo + hi) / 2
    return [f"env.dynamics={json.dumps(values)}",
            f"env.dynamics_source={json.dumps(f'{path} sha256:{file_sha256(Path(path))}')}",
            f"env.randomization.latency_s=[{lo - mid}, {hi - mid}]"]


def pin_reward_weights(data: dict, run: RunConfig) -> dict:
    """`data` (the config `run` was checked from) with every reward weight of a locomotion
    run written out under env.task.rewards (sim/tasks.py full_weights): its saved config then
    keeps the reward it trained on when the defaults change (a fine-tune of it recomputes the
    same reward). The weights in force are the same, so `run` stays valid."""
    from gaitforge.sim.tasks import full_weights

    if run.env_id:
        return data
    env = data.get("env", {})
    task = {**env.get("task", {}), "rewards": full_weights(run.env.task)}
    return {**data, "env": {**env, "task": task}}


def _fit_to_env(data: dict, run: RunConfig, env) -> tuple[dict, RunConfig]:
    """Settings that cannot apply to the chosen env take the value that can, said once and
    recorded in the config the run saves: an asymmetric critic needs privileged state
    (critic_obs), which only the locomotion env offers."""
    if run.agent.asymmetric_critic and env.single_critic_observation_space is None:
        print(f"gaitforge: note: agent.asymmetric_critic is off for {run.env_id}: that env "
              "offers no privileged state for the critic (the run's config.yaml records "
              "asymmetric_critic: false)", file=sys.stderr)
        data = {**data, "agent": {**data.get("agent", {}), "asymmetric_critic": False}}
        run = dataclasses.replace(run, agent=dataclasses.replace(run.agent,
                                                                 asymmetric_critic=False))
    return data, run


def _build_trainer(run: RunConfig, env, run_dir: Path, source: str):
    """(trainer, session): the session is what must be closed after training (Ray, if the
    run collects on it), or None."""
    from gaitforge.agents import make_agent
    from gaitforge.agents.trainer import Trainer

    agent_cfg, t = run.agent, run.train
    critic_space = env.single_critic_observation_space
    agent = make_agent(agent_cfg.name, agent_cfg, env.single_observation_space.shape[0],
                       env.single_action_space.shape[0],
                       critic_obs_dim=critic_space.shape[0] if agent_cfg.asymmetric_critic
                       else 0, seed=t.seed)
    if run.ray.enabled:
        from .ray_train import ray_trainer

        return ray_trainer(run, agent, env, run_dir, source, warn=_warn)
    return Trainer(agent, env, t, run_dir / "checkpoints",
                   evaluate=evaluator(run, t.eval_episodes), warn=_warn), None


def _warn(sentence: str) -> None:
    print(f"gaitforge: {sentence}", file=sys.stderr)


def _resumed_config(run_dir: Path, config_path: str | None, overrides: list[str]) -> dict:
    """The saved config with the user's changes; only the step budget may change on resume
    (to train longer), and where collection runs (ray.*): anything else would make the resumed
    run a different experiment."""
    saved = upgrade_saved_config(load_config(run_dir))
    data = deep_merge(saved, load_yaml(config_path)) if config_path else saved
    data = apply_overrides(data, overrides)
    diff = [d for d in config_differences(saved, data)
            if not d.startswith(("train.total_env_steps:", "ray."))]
    if diff:
        raise ConfigError(f"{run_dir}: --resume with a config that does not match the "
                          "run's (only train.total_env_steps and ray.* may change):\n  "
                          + "\n  ".join(diff))
    return data


def _checked(data: dict, source: str) -> RunConfig:
    run = from_dict(RunConfig, data, source=source)
    if run.train.replay_capacity < run.agent.batch_size:
        raise ConfigError(f"{source}: train.replay_capacity ({run.train.replay_capacity}) is "
                          f"smaller than agent.batch_size ({run.agent.batch_size})")
    if run.ray.enabled:
        from .ray_train import require_ray

        require_ray(source)
    return run


def train(config_path: str | None, overrides: list[str], resume: str | None,
          name: str | None, progress: bool = True) -> Path:
    """Train a new run into runs/, or resume one. Whatever can refuse the command (the config,
    the run's name, the env, the checkpoint to resume from) is settled before anything is
    written, so a refused command changes nothing on disk."""
    from gaitforge.sim.vec_env import VecEnv

    if resume:
        run_dir = resolve_run(resume)
        data = _resumed_config(run_dir, config_path, overrides)
        source = str(run_dir / "config.yaml")
    else:
        data = compose(config_path, overrides)
        source = str(config_path or "configs/default.yaml")
    run = _checked(data, source)
    if not resume:
        data = pin_reward_weights(data, run)
        run_dir = run_dir_for(name, f"{env_fns(run)[1]}-{run.agent.name}")
    configure_tensorflow()
    workers = 0 if run.ray.enabled else run.vec_env.workers  # Ray: the env gives its spaces
    env = VecEnv([env_fns(run)[0]] * run.vec_env.num_envs, workers=workers)
    session = None
    try:
        data, run = _fit_to_env(data, run, env)
        trainer, session = _build_trainer(run, env, run_dir, source)
        if resume:
            folder = trainer.load_checkpoint()
            if data != load_config(run_dir):
                save_config(run_dir, data)
            cut_logs(run_dir, trainer.env_steps)
            print(f"resumed {run_dir} from {folder.name} ({trainer.env_steps} env steps)")
        else:
            create_run_dir(run_dir, data)
        _train_logged(trainer, run_dir, progress)
    finally:
        env.close()
        if session is not None:
            session.close()
    return run_dir


def _train_logged(trainer, run_dir: Path, progress: bool) -> None:
    logger = trainer.logger = RunLogger(run_dir)
    try:
        _train_with_progress(trainer, progress)
    except BaseException:
        logger.close(discard=True)  # rows past the last checkpoint; resume would cut them
        raise
    logger.close()


def _train_with_progress(trainer, progress: bool) -> None:
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
            bar.write("eval @ {env_steps}: ".format(**result) + ", ".join(
                f"{k} {v:.3f}" for k, v in result.items()
                if k != "env_steps" and isinstance(v, int | float)))
        seen_evals = len(t.history)

    trainer.train(progress=tick)
    bar.close()
