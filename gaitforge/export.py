"""`gaitforge export RUN`: a run's newest checkpoint -> a verified policy bundle.

The bundle's observation and action layouts come from the run's own ObservationBuilder and
ActionMapper (the code the deploy runtime uses), parity is checked on 256 random
observations and 256 from a rollout of the deterministic actor, and the bundle is built in
a staging folder beside its destination and renamed into place only when everything passed.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import numpy as np

from gaitforge.control.bundle import PolicyBundle, publish_bundle
from gaitforge.robots.configio import ConfigError
from gaitforge.runs import load_config

PARITY_RANDOM = 256
PARITY_ROLLOUT = 256


def rollout_observations(agent, env, n: int, command, seed: int = 0) -> np.ndarray:
    """n observations seen by the deterministic actor driving `env` at `command`."""
    env.set_command(command)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(agent.act(obs[None], deterministic=True)[0])
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(out, np.float32)


def export_run(run: str, out: str | None = None, overwrite: bool = False,
               ) -> tuple[PolicyBundle, dict]:
    from gaitforge.agents.export import (
        export_actor,
        normalizer_record,
        random_observations,
    )
    from gaitforge.sim.env import make_env
    from gaitforge.training import load_run_agent

    run_dir, cfg, agent, checkpoint = load_run_agent(run)
    if cfg.env_id:
        raise ConfigError(f"{run_dir}: trained on '{cfg.env_id}'; bundles are for robots "
                          "(a locomotion run)")
    dest = Path(out) if out else run_dir / "bundle"
    env = make_env(cfg.env)
    try:
        obs = np.concatenate([
            random_observations(agent, PARITY_RANDOM),
            rollout_observations(agent, env, PARITY_ROLLOUT, cfg.evaluation.command)])
        builder, mapper, spec = env.obs_builder, env.action_mapper, env.robot_spec
    finally:
        env.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        parity = export_actor(agent, staging, obs)
        manifest = {
            "robot": {"name": spec.name, "spec_sha256": spec.sha256},
            "observation": {"size": builder.size, "layout": builder.layout,
                            "normalizer": normalizer_record(agent)},
            "action": mapper.layout,
            "control_dt_s": cfg.env.sim.control_dt_s,
            "source": {"run": str(run_dir.resolve()), "checkpoint": checkpoint.name,
                       "agent": agent.algo, "config": load_config(run_dir)},
            "parity": parity,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        bundle = publish_bundle(staging, dest, manifest, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle, parity
