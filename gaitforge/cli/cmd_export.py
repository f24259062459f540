"""`gaitforge export RUN`: a run's policy checkpoint (its newest; a fine-tune's best) -> a
verified policy bundle.

The bundle's observation and action layouts come from the run's own ObservationBuilder and
ActionMapper (the code the deploy runtime rebuilds from them), parity is checked on 256 random
observations and 256 from a rollout of the deterministic actor, and the bundle is built in a
staging folder beside its destination and renamed into place only when everything passed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError

PARITY_RANDOM = 256
PARITY_ROLLOUT = 256


def register(sub) -> None:
    p = sub.add_parser("export", help="write a run's actor as a policy bundle (TFLite + "
                       "SavedModel + bundle.json), checked for parity")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.add_argument("--out", help="bundle folder (default: RUN/bundle)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.agents.export import ExportError

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


def lineage(cfg) -> dict | None:
    """Where a fine-tuned policy came from (the bundle's `lineage`); None for a run trained
    from scratch."""
    f = cfg.finetune
    if not f.parent_run:
        return None
    return {"parent_run": f.parent_run, "parent_checkpoint": f.parent_checkpoint,
            "parent_bundle_sha256": f.parent_bundle_sha256, "logs": dict(f.logs),
            "dynamics": cfg.env.dynamics_source, "sim_mix": f.sim_mix}


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


def export_run(run: str, out: str | None = None, overwrite: bool = False):
    """(PolicyBundle, parity report) for the run's policy checkpoint."""
    from gaitforge.agents.export import export_actor, normalizer_record, random_observations
    from gaitforge.control.bundle import BundleError, check_replaceable, manifest, publish_bundle
    from gaitforge.control.files import make_staging, remove_staging
    from gaitforge.sim.env import make_env

    from .run_folders import load_config, load_run_agent

    run_dir, cfg, agent, checkpoint = load_run_agent(run)
    if cfg.env_id:
        raise ConfigError(f"{run_dir}: trained on '{cfg.env_id}'; bundles are for robots "
                          "(a locomotion run)")
    dest = Path(out) if out else run_dir / "bundle"
    if dest.exists() or dest.is_symlink():  # refuse before the minutes of export, not after
        if not overwrite:
            raise BundleError(f"{dest} exists (pass --overwrite to replace it)")
        check_replaceable(dest)
    env = make_env(cfg.env)
    try:
        obs = np.concatenate([
            random_observations(agent, PARITY_RANDOM),
            rollout_observations(agent, env, PARITY_ROLLOUT, cfg.evaluation.command)])
        builder, mapper, spec = env.obs_builder, env.action_mapper, env.robot_spec
    finally:
        env.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging(dest.parent, dest.name)
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        parity = export_actor(agent, staging, obs)
        fields = manifest(
            spec=spec, observation_layout=builder.layout, normalizer=normalizer_record(agent),
            action_layout=mapper.layout, control_dt_s=cfg.env.sim.control_dt_s,
            source={"run": str(run_dir.resolve()), "checkpoint": checkpoint.name,
                    "agent": agent.algo, "config": load_config(run_dir)},
            parity=parity, lineage=lineage(cfg))
        bundle = publish_bundle(staging, dest, fields, overwrite=overwrite)
    except BaseException:
        remove_staging(staging)
        raise
    return bundle, parity
