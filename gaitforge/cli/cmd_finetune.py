"""`gaitforge finetune RUN --logs PATH... [--dynamics FILE] [--sim-mix F] [--steps N]`: make a
trained policy better on the robot its logs came from.

The run's agent is restored (its actor and observation normaliser; its critic too when it was
trained on what a log holds). The logged episodes become transitions with their rewards
recomputed from logged quantities and the base-velocity estimator, run again on the logged
sensors so that logs and fresh simulation agree (sim/log_rewards.py), in an offline partition
of replay; every minibatch takes `1 - sim_mix` of its rows from the logs and `sim_mix` from
fresh simulation around the given dynamics (a dynamics file from `gaitforge sysid`), as RLPD
does (0.5). With the logs in the minibatches, the fresh simulation's rewards judge the
trunk's motion by the estimator's output too (`env.reward_inputs=estimated`), as the logs'
are: judged by the truth, the explored parent paid lin_vel_z 0.0003 a step in the identified
simulation and 0.0014 in its logs of the gap robot (the estimate's vertical velocity is
mostly the estimator's noise), and the critic learned both (judged alike, half and half on
one draw's logs went from 0.151 to 0.128 m/s on the gap robot: README). The critic sees only
what a log holds (observation plus the estimator's output): the run's own critic when it was
trained so (`env.critic_inputs=estimated`), kept as it was built, else a new one with
LayerNorm (RLPD). Either trains alone first while the actor waits
(`--critic-warmup`): a good actor pulled about by a critic that knows nothing yet, or knows
only the training dynamics, unlearns. Four things hold the policy near the parent's:
  - `--rehearse`: that share of the fresh envs keeps the run's own training dynamics beside
    the identified ones (trained around the identified dynamics alone, a policy forgot how to
    hold its heading on the nominal robot);
  - `--anchor` (agent.actor_anchor): the actor's loss gains the weighted mean squared
    difference between its actions and the parent's;
  - the selection: it evaluates the parent first, then every 10k steps, in the fine-tune's
    simulation and (with `--dynamics`) on the parent's own dynamics too, and keeps as its
    policy the checkpoint that tracks best there without trading one error for another and
    without unlearning the nominal robot (agents/finetune.py, `choose_best`): the parent
    itself when nothing beat it, which it says;
  - `--ratchet` (on by default): after each evaluation the actor goes on from that best
    checkpoint, a worse one undone, and the anchor moves to each new best, so that a swing
    away from a good policy does not stay (agents/finetune.py, `Ratchet`).
`--logged-commands F` (default 0.5): that share of the fresh episodes is commanded as the logs
were (their most used commands, `env.task.command.focus`), the rest from the run's ranges as
in training, and the selection's evaluations take the most used one (`evaluation.command`),
so that the fine-tune spends its steps, and chooses, where the robot is used.
What a dynamics file did not identify (a hung robot shows neither trunk mass nor foot
friction; `gaitforge sysid --start` on walking logs does) is randomised widely
(`unseen_overrides`). `--set finetune.actor_average=R` evaluates, checkpoints and exports a
Polyak average of the actor (moved R toward it per update) instead. `--set
agent.critic_conservative=W` adds CQL's regulariser to the critics' loss, the policy's actions
valued below the logged ones (off by default; the README has what it did).
Without the ratchet a fine-tune swung between its checkpoints (forward error 0.05-0.28 m/s in
simulation within one run), and what one round gained on a gap depended on where the swings
landed; the README's "Closing the loop" section has the figures (`bench/finetune_bench.py`).
The result is a new run folder, resumable like `train`; `gaitforge export` on it writes a
bundle of that checkpoint whose manifest records its lineage (parent bundle, logs, dynamics
file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError, apply_overrides, from_dict, load_yaml

from .argtypes import count, count0, fraction, nonnegative
from .run_config import RunConfig, evaluator, upgrade_saved_config
from .run_folders import (
    configure_tensorflow,
    create_run_dir,
    cut_logs,
    load_config,
    resolve_run,
    run_dir_for,
)

ANCHOR = 0.1
REHEARSE = 0.5
UNSEEN_MASS_FRAC = 0.4  # of the robot's mass: a payload, a battery, a shell
UNSEEN_FRICTION = 0.4  # a smooth floor under rubber feet
LOGGED_COMMANDS = 0.5  # share of fresh episodes commanded as the logs were (README: halved 3 of 3)
FOCUS_MOST = 16  # logged commands (rounded to FOCUS_ROUND) a fine-tune focuses on, most used
FOCUS_ROUND = 2  # decimals: 0.01 m/s, 0.01 rad/s
# the evaluations a checkpoint is chosen by: 4 episodes of 10 s in each simulation, every 10k
SELECTION = ("train.eval_every_steps=10000", "train.checkpoint_every_steps=10000",
             "train.eval_episodes=4", "evaluation.episode_length_s=10")


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a run's policy from logged episodes, mixed "
                       "with fresh simulation (RLPD); a new run folder")
    p.add_argument("run", help="the run to start from (name under runs/, or its folder); "
                   "with --resume, the fine-tune run to continue")
    p.add_argument("--logs", nargs="+", default=[], metavar="PATH",
                   help="episode logs of the run's bundle (.gflog from `gaitforge deploy`)")
    p.add_argument("--dynamics", metavar="FILE", help="simulate fresh data around this "
                   "dynamics file (from `gaitforge sysid`)")
    p.add_argument("--sim-mix", type=fraction, default=0.5, metavar="F",
                   help="fraction of each minibatch from fresh simulation (default 0.5, "
                   "RLPD's; 0: the logs only, no simulation; 1: the logs only identify the "
                   "robot, which did best with --dynamics in bench/finetune_bench.py; of the "
                   "mixes with logs, 0.75 did best there)")
    p.add_argument("--rehearse", type=fraction, default=REHEARSE, metavar="F",
                   help="with --dynamics: share of the fresh-simulation envs that keep the "
                   "run's own training dynamics, so that what it did well is not unlearned "
                   f"(default {REHEARSE:g}, at least one env; 0: the identified dynamics only)")
    p.add_argument("--logged-commands", type=fraction, default=LOGGED_COMMANDS, metavar="F",
                   help="share of the fresh-simulation episodes commanded as the logs were "
                   f"(their {FOCUS_MOST} most used commands, env.task.command.focus), the "
                   f"rest drawn from the run's ranges as in training (default {LOGGED_COMMANDS:g};"
                   " 0: the ranges only, as before)")
    p.add_argument("--steps", type=count, default=80_000, metavar="N",
                   help="simulation steps (with --sim-mix 0: update steps) (default 80000)")
    p.add_argument("--critic-warmup", type=count0, default=5_000, metavar="N",
                   help="updates of the critic (new, or the run's, which knows the training "
                   "dynamics only) alone before the actor learns (default 5000)")
    p.add_argument("--anchor", type=nonnegative, default=ANCHOR, metavar="W",
                   help="weight of the pull of the actor toward the parent's actions "
                   f"(agent.actor_anchor; default {ANCHOR:g}; 0: none)")
    p.add_argument("--ratchet", action=argparse.BooleanOptionalAction, default=True,
                   help="after each evaluation the actor goes on from the best checkpoint so "
                   "far, a worse one undone (finetune.ratchet; default on)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the fine-tune run (as for train), e.g. "
                   "--set agent.num_critics=10 for a critic ensemble (RLPD's; the TD target's "
                   "min over agent.critic_subset=2 drawn per minibatch)")
    p.add_argument("--skip-bad", action="store_true", help="leave out a corrupt log (named) "
                   "and use the rest")
    p.add_argument("--resume", action="store_true", help="continue the fine-tune run RUN")
    p.add_argument("--name", help="run folder name (default: RUN-finetune-TIME)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from .cmd_train import _train_logged

    if args.resume:
        run_dir = resolve_run(args.run)
        data = upgrade_saved_config(load_config(run_dir))
        cfg = from_dict(RunConfig, data, source=str(run_dir / "config.yaml"))
        transitions = _transitions(cfg, list(cfg.finetune.logs), skip_bad=False,
                                   expect=cfg.finetune.logs)
    else:
        if not args.logs:
            raise ConfigError("--logs: give the episode logs to fine-tune from")
        parent_dir = resolve_run(args.run)
        parent = from_dict(RunConfig, upgrade_saved_config(load_config(parent_dir)),
                           source=str(parent_dir / "config.yaml"))
        if parent.env_id:
            raise ConfigError(f"{parent_dir}: trained on '{parent.env_id}'; fine-tuning from "
                              "logs is for robots (a locomotion run)")
        transitions = _transitions(parent, args.logs, skip_bad=args.skip_bad)
        data = _finetune_config(args, parent_dir, transitions)
        cfg = from_dict(RunConfig, data, source=f"{parent_dir} fine-tuned")
        run_dir = run_dir_for(args.name, f"{parent_dir.name}-finetune")
    check_selection(cfg.train)
    configure_tensorflow()
    env = _env(cfg)
    try:
        tuner = _fine_tuner(cfg, env, run_dir, transitions)
        if args.resume:
            folder = tuner.load_checkpoint()
            cut_logs(run_dir, tuner.env_steps)
            print(f"resumed {run_dir} from {folder.name}")
        else:
            create_run_dir(run_dir, data)
        t0 = time.perf_counter()
        _train_logged(tuner, run_dir, not args.no_progress)
    finally:
        env.close()
    print(f"fine-tuned in {time.perf_counter() - t0:.0f} s: {run_dir}  (gaitforge export "
          f"{run_dir})")
    print(chosen(tuner.history))
    return 0


def check_selection(train) -> None:
    """A fine-tune keeps the checkpoint of its best evaluation (and the ratchet keeps or
    undoes there), so every evaluation must fall on a checkpoint's step."""
    every, saved = train.eval_every_steps, train.checkpoint_every_steps
    if every % saved:
        raise ConfigError(f"train.eval_every_steps={every} is not a multiple of "
                          f"train.checkpoint_every_steps={saved}: a fine-tune chooses among "
                          "evaluations that have a checkpoint, so each must fall on one")


def chosen(history: list[dict]) -> str:
    """The sentence saying which checkpoint is the fine-tune's policy, and why."""
    from gaitforge.agents.finetune import choose_best, tracking_cost

    best = choose_best(history)
    if best is None:
        return "no evaluation was checkpointed: the policy is the newest checkpoint"
    parent, pick = history[0], history[best]
    costs = f"{tracking_cost(pick):.3f} against the parent's {tracking_cost(parent):.3f}"
    if best == 0:
        return (f"no checkpoint tracked better than the parent ({costs} at best was not beaten"
                " without unlearning): the policy is the parent's own")
    return (f"policy: checkpoint {pick['checkpoint']} (tracking cost in the fine-tune's "
            f"simulation {costs})")


def _transitions(cfg: RunConfig, paths: list[str], *, skip_bad: bool,
                 expect: dict | None = None) -> dict[str, np.ndarray]:
    """The logs' transitions, concatenated, after every check (see _check_log)."""
    from gaitforge.control.logger import LogFormatError
    from gaitforge.control.policy_io import ObservationBuilder
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.log_rewards import LogContentError, log_transitions

    from .logs_in import load_logs

    spec = load_robot_spec(cfg.env.robot)
    parts, used, commands = [], {}, []
    for path in paths:
        try:
            (entry,) = load_logs([path])
        except LogFormatError as err:
            if not skip_bad:
                raise ConfigError(f"{err} (--skip-bad leaves it out)") from None
            print(f"gaitforge: skipped a corrupt log: {err}", file=sys.stderr)
            continue
        if expect is not None and expect.get(path) != entry.sha256:
            raise ConfigError(f"{path}: changed since the fine-tune began (sha256 "
                              f"{entry.sha256[:12]}..., the run recorded "
                              f"{str(expect.get(path))[:12]}...)")
        if entry.note:
            print(entry.note)
        _check_log(entry, cfg, spec)
        builder = ObservationBuilder(spec, cfg.env.observation, cfg.env.action.gait)
        try:
            parts.append(log_transitions(entry.log, spec, cfg.env.task, observation=builder,
                                         reestimate=True))
        except LogContentError as err:
            raise ConfigError(f"{err}: the fine-tuning critic needs it") from None
        used[path] = entry.sha256
        commands.append(_policy_commands(entry.log))
    if not parts:
        raise ConfigError("no usable log left to fine-tune from")
    fields = ("obs", "action", "reward", "next_obs", "terminated", "critic_obs",
              "next_critic_obs")
    out = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    out["used"] = used
    out["commands"] = most_used(np.concatenate(commands))
    return out


def offline_part(transitions: dict) -> dict[str, np.ndarray]:
    """The arrays of `_transitions`' result, for replay (without what it says of the logs)."""
    return {k: v for k, v in transitions.items() if k not in ("used", "commands")}


def _policy_commands(log) -> np.ndarray:
    """(ticks, 3): the velocity command in force at each of a log's policy ticks that has one
    (`velocity_commands`: a log older than that field gives its metadata's command)."""
    from gaitforge.control.log_export import velocity_commands

    acted = np.isfinite(log.ticks["action"]).all(axis=1)
    given = np.asarray(velocity_commands(log), float)[acted]
    return given[np.isfinite(given).all(axis=1)]


def most_used(commands: np.ndarray) -> list[list[float]]:
    """The FOCUS_MOST commands given for the most ticks, each rounded to FOCUS_ROUND decimals
    (a gamepad's are never the same twice), most used first (ties: the smaller first)."""
    rounded = np.round(np.asarray(commands, float).reshape(-1, 3), FOCUS_ROUND) + 0.0  # no -0
    unique, counts = np.unique(rounded, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:FOCUS_MOST]
    return [[float(x) for x in unique[i]] for i in order]


def _check_log(entry, cfg: RunConfig, spec) -> None:
    """Refuse a log of another robot, of another policy I/O (naming the field), of an
    excitation routine, or without a single policy tick."""
    from gaitforge.control.policy_io import ActionMapper, ObservationBuilder, same_layout

    meta, path = entry.log.metadata, entry.path
    if meta.get("robot") != spec.name:
        raise ConfigError(f"{path}: a log of robot '{meta.get('robot')}', the run is of "
                          f"'{spec.name}'")
    if meta.get("kind") != "policy":
        raise ConfigError(f"{path}: a log of {meta.get('kind') or 'an unknown kind'} "
                          "(kind), not of a policy's episode: nothing to fine-tune from")
    if "observation_layout" not in meta or "action_layout" not in meta:
        raise ConfigError(f"{path}: does not record its policy I/O (written by an older "
                          "gaitforge): deploy the bundle again to log new episodes")
    builder = ObservationBuilder(spec, cfg.env.observation, cfg.env.action.gait)
    mapper = ActionMapper(spec, cfg.env.action)
    try:
        same_layout("observation", builder.layout, meta["observation_layout"])
        same_layout("action", mapper.layout, meta["action_layout"])
    except ValueError as err:
        raise ConfigError(f"{path}: not a log of this run's policy: {err}") from None
    if not np.isfinite(entry.log.ticks["action"]).all(axis=1).any():
        raise ConfigError(f"{path}: no policy ticks (only soft start or shutdown): nothing "
                          "to fine-tune from")


def _finetune_config(args, parent_dir: Path, transitions: dict) -> dict:
    """The parent's config, fine-tuned: a critic on what a log holds (the run's own where it
    already is one, as it was built; else a new one with LayerNorm); no random warm-up; the
    step budget; the dynamics; and where it all came from."""
    from gaitforge.control.bundle import file_sha256

    from .cmd_train import dynamics_overrides, pin_reward_weights

    data = upgrade_saved_config(load_config(parent_dir))
    bundle = parent_dir / "bundle" / "bundle.json"
    keeps_critic = (data.get("env", {}).get("critic_inputs") == "estimated"
                    and data.get("agent", {}).get("asymmetric_critic", False))
    data = apply_overrides(data, [
        "env.critic_inputs=estimated", "agent.asymmetric_critic=true",
        *([] if keeps_critic else ["agent.critic_layer_norm=true"]),
        f"train.total_env_steps={args.steps}", "train.warmup_steps=0",
        f"agent.actor_anchor={args.anchor}",
        *SELECTION])
    data["finetune"] = {
        "parent_run": str(parent_dir.resolve()),
        "parent_checkpoint": parent_policy(parent_dir / "checkpoints").name,
        "parent_bundle_sha256": file_sha256(bundle) if bundle.is_file() else "",
        "logs": dict(transitions["used"]), "sim_mix": float(args.sim_mix),
        "critic_warmup_updates": int(args.critic_warmup),
        "rehearse": float(args.rehearse) if args.dynamics else 0.0,
        "ratchet": bool(args.ratchet)}
    if args.logged_commands > 0 and transitions["commands"]:  # trained and chosen where used
        data = apply_overrides(data, [
            f"env.task.command.focus={json.dumps(transitions['commands'])}",
            f"env.task.command.focus_prob={args.logged_commands}",
            f"evaluation.command={json.dumps(transitions['commands'][0])}"])
    if args.dynamics:
        data = apply_overrides(data, unseen_overrides(args.dynamics, data))
    data = apply_overrides(data, args.set)
    if data["finetune"]["sim_mix"] < 1 and not any(
            item.startswith("env.reward_inputs=") for item in args.set):
        # the logs are in the minibatches: fresh simulation is rewarded as they are
        data = apply_overrides(data, ["env.reward_inputs=estimated"])
    data = pin_reward_weights(  # the reward it tunes on
        data, from_dict(RunConfig, data, source=f"{parent_dir} fine-tuned"))
    if args.dynamics:
        data = apply_overrides(data, dynamics_overrides(args.dynamics, None, [
            f"env.robot={data['env']['robot']}",
            f"env.sim.engine={data['env'].get('sim', {}).get('engine', 'pybullet')}"]))
    return data


def unseen_overrides(path: str, data: dict) -> list[str]:
    """--set items widening the randomisation of what a dynamics file from `gaitforge sysid`
    did not identify (its provenance's `fit` list lacks it: a hung robot shows neither its
    trunk mass nor its feet's friction): added trunk mass up to UNSEEN_MASS_FRAC of the
    robot's mass, foot friction down to UNSEEN_FRICTION. A file without that list: none."""
    from gaitforge.sim.randomization import RandomizationConfig

    provenance = load_yaml(path).get("provenance")
    fit = provenance.get("fit") if isinstance(provenance, dict) else None
    if not isinstance(fit, list):
        return []
    current = {**vars(RandomizationConfig()), **data["env"].get("randomization", {})}
    out = []
    if "trunk_mass_delta_kg" not in fit:
        lo, hi = current["added_mass_frac"]
        out.append(f"env.randomization.added_mass_frac=[{lo}, {max(hi, UNSEEN_MASS_FRAC)}]")
    if "foot_friction" not in fit:
        lo, hi = current["friction"]
        out.append(f"env.randomization.friction=[{min(lo, UNSEEN_FRICTION)}, {hi}]")
    return out


def parent_env(cfg: RunConfig):
    """The fine-tune's env with the parent run's own dynamics and randomisation (the critic
    sees the same inputs as in the fine-tune's), or None when the two are the same."""
    import dataclasses

    parent_dir = Path(cfg.finetune.parent_run)
    parent = from_dict(RunConfig, upgrade_saved_config(load_config(parent_dir)),
                       source=str(parent_dir / "config.yaml")).env
    own = dataclasses.replace(cfg.env, dynamics=parent.dynamics,
                              dynamics_source=parent.dynamics_source,
                              randomization=parent.randomization)
    return None if own == cfg.env else own


def env_configs(cfg: RunConfig) -> list:
    """One EnvConfig per fresh-simulation env: the fine-tune's (around the identified
    dynamics), and `finetune.rehearse` of them (rounded, at least one when above 0) with the
    parent run's own dynamics and randomisation (the rest is the fine-tune's: the critic sees
    the same inputs in every env)."""
    n, share = cfg.vec_env.num_envs, cfg.finetune.rehearse
    k = min(n, max(1, round(share * n))) if share > 0 else 0
    own = parent_env(cfg) if k else None
    return [cfg.env] * n if own is None else [cfg.env] * (n - k) + [own] * k


def finetune_evaluator(cfg: RunConfig):
    """`evaluate(agent)`: the run's evaluation in the fine-tune's simulation, and where the
    parent's dynamics differ, the same on those, its metrics prefixed "nominal/"."""
    import dataclasses

    from gaitforge.agents.finetune import NOMINAL

    episodes = cfg.train.eval_episodes
    own, nominal = evaluator(cfg, episodes), parent_env(cfg)
    if nominal is None:
        return own
    on_nominal = evaluator(dataclasses.replace(cfg, env=nominal), episodes)

    def evaluate(agent) -> dict:
        return own(agent) | {NOMINAL + k: v for k, v in on_nominal(agent).items()
                             if isinstance(v, int | float)}
    return evaluate


def _env(cfg: RunConfig):
    from gaitforge.sim.env import env_factory
    from gaitforge.sim.vec_env import VecEnv

    workers = cfg.vec_env.workers if cfg.finetune.sim_mix > 0 else 0
    return VecEnv([env_factory(e) for e in env_configs(cfg)], workers=workers)


def parent_policy(checkpoints: Path) -> Path:
    """The parent's policy checkpoint: the one it names best (a fine-tune), else its newest."""
    from gaitforge.agents.checkpoint_folder import best_folder
    from gaitforge.agents.trainer import latest_checkpoint

    return best_folder(checkpoints) or latest_checkpoint(checkpoints)


def _fine_tuner(cfg: RunConfig, env, run_dir: Path, transitions: dict):
    """The FineTuner: an agent restored from the parent run's policy checkpoint (the one the
    fine-tune recorded)."""
    from gaitforge.agents import make_agent
    from gaitforge.agents.checkpoint import load_arrays
    from gaitforge.agents.finetune import FineTuner, restore_matching

    a, t = cfg.agent, cfg.train
    critic_dim = env.single_critic_observation_space.shape[0]
    agent = make_agent(a.name, a, env.single_observation_space.shape[0],
                       env.single_action_space.shape[0], critic_obs_dim=critic_dim, seed=t.seed)
    parent = Path(cfg.finetune.parent_run)
    state = load_arrays(parent / "checkpoints" / cfg.finetune.parent_checkpoint / "agent.npz")
    left = restore_matching(agent, state)
    if any(name.startswith("actor") for name in left):
        raise ConfigError(f"{parent}: its actor does not fit this fine-tune (network sizes "
                          "changed?)")
    if a.actor_anchor > 0:
        agent.set_anchor()  # at the parent's actor (a resumed run restores its own after)
    offline = offline_part(transitions)
    return FineTuner(agent, env, t, run_dir / "checkpoints", offline=offline,
                     offline_fraction=1.0 - cfg.finetune.sim_mix,
                     critic_warmup_updates=cfg.finetune.critic_warmup_updates,
                     actor_average=cfg.finetune.actor_average, ratchet=cfg.finetune.ratchet,
                     evaluate=finetune_evaluator(cfg),
                     warn=lambda sentence: print(f"gaitforge: {sentence}", file=sys.stderr))
