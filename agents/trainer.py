"""Off-policy trainer: collect from a vectorised env with batched inference, learn, evaluate,
log and checkpoint. Generic over the env: anything with the VecEnv API (`num_envs`,
`single_observation_space`, `single_action_space`, `reset(seed)`, `step(actions)` with
same-step autoreset and `info["final_obs"]`; optional `info["critic_obs"]`,
`info["final_critic_obs"]`, `info["reward_terms"]`).

Exact resume. A checkpoint is a *segment boundary*: right after it, every env is reset with a
seed derived from (seed, env steps), and the episodes in flight end as truncations (not
terminals, so nothing wrong is bootstrapped). A run resumed from that checkpoint resets its
envs the same way, so a resumed run and an uninterrupted one see the same transitions,
draw the same random numbers and reach the same parameters.

Checkpoints (`<dir>/<env_steps>/`, see checkpoint_folder.py): agent.npz, replay.npz,
trainer.json (counters, NumPy RNG state, config, evaluation history, episode bookkeeping) and
SHA256SUMS over all three, written into a marked staging folder and renamed into place: every
visible folder is complete, and one edited byte anywhere refuses it (resume then takes the
previous one, saying so). `<dir>/latest` names the newest for people; resume does not depend
on it. The logger is flushed (to disk) before each checkpoint, so a run killed at any instant
keeps its logs up to its last checkpoint; resume cuts them back to that step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gaitforge.control.files import write_atomic

from .checkpoint import CheckpointError, load_arrays
from .checkpoint_folder import (
    AGENT,
    FORMAT,
    LEGACY_FORMAT,
    REPLAY,
    TRAINER,
    disk_error,
    newest_usable,
    prune,
    remove_stale_staging,
    step_folders,
    verify_checkpoint,
    write_checkpoint,
)
from .replay import ReplayBuffer

if TYPE_CHECKING:
    from . import Agent


@dataclass(frozen=True)
class TrainConfig:
    total_env_steps: int = 200_000  # transitions collected, summed over envs
    warmup_steps: int = 5_000  # uniform random actions before the policy acts
    replay_capacity: int = 1_000_000
    eval_every_steps: int = 20_000
    eval_episodes: int = 5
    checkpoint_every_steps: int = 20_000
    keep_checkpoints: int = 2
    log_every_steps: int = 2_000
    seed: int = 0
    utd: int = 1  # gradient updates per env step (num_envs * utd per vectorised step)
    # Step the envs (in their worker processes) while the agent learns, instead of one after
    # the other. Needs vec_env.workers >= 1 (checked by the run config) and an env with
    # step_async/step_wait. The update of a step then samples the replay before that step's
    # transitions are added (one step later).
    overlap: bool = False

    def __post_init__(self):
        for name in ("total_env_steps", "replay_capacity", "eval_every_steps",
                     "checkpoint_every_steps", "keep_checkpoints", "log_every_steps", "utd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.overlap, bool):
            raise ValueError(f"overlap must be true or false, got {self.overlap!r}")


def segment_seed(seed: int, env_steps: int) -> int:
    """Seed of the env reset that starts a segment (the run's start, or after a checkpoint)."""
    return int(np.random.SeedSequence([seed, env_steps]).generate_state(1)[0] & 0x7FFFFFFF)


class Trainer:
    fresh_partition = "main"  # the replay partition collected transitions go to
    def __init__(self, agent: Agent, env, config: TrainConfig, checkpoint_dir: str | os.PathLike,
                 *, evaluate: Callable[[object], dict] | None = None, logger=None,
                 warn: Callable[[str], None] | None = None):
        """agent: an `Agent` (gaitforge.agents): act, observe, update_stacked,
        get_state/set_state, config.batch_size, critic_obs_dim.
        evaluate(agent) -> dict of numbers, run every eval_every_steps.
        logger: object with scalar(tag, value, step), evaluation(result) and flush() (which
        must make everything logged so far durable: it runs before every checkpoint), or None.
        warn(sentence): what the trainer tells people (a skipped checkpoint, a folder left
        alone); default: printed to stderr."""
        self.agent, self.env, self.config = agent, env, config
        self.checkpoint_dir = Path(checkpoint_dir)
        self.evaluate, self.logger = evaluate, logger
        self.warn = warn or (lambda sentence: print(sentence, file=sys.stderr))
        self._cleaned = False
        self.batch_size = agent.config.batch_size
        if config.replay_capacity < self.batch_size:
            raise ValueError(f"replay_capacity ({config.replay_capacity}) is smaller than the "
                             f"agent's batch_size ({self.batch_size})")
        self.obs_dim = env.single_observation_space.shape[0]
        self.act_dim = env.single_action_space.shape[0]
        self.critic_obs_dim = agent.critic_obs_dim
        self.replay = ReplayBuffer(self.obs_dim, self.act_dim, config.replay_capacity,
                                   critic_obs_dim=self.critic_obs_dim)
        self.rng = np.random.default_rng(config.seed)
        self.env_steps = self.updates = self.episodes = 0
        self._obs = self._critic_obs = None
        self._ep_return = np.zeros(env.num_envs)
        self._ep_terms: dict[str, np.ndarray] = {}
        self._finished: list[float] = []  # episode returns since the last log
        self._finished_terms: dict[str, list[float]] = {}
        self._recent: list[float] = []  # the last 20 episode returns, for progress bars
        self._terrain_level: float | None = None  # mean over envs, with terrain levels
        self.history: list[dict] = []  # evaluation results

    # --- the loop ---
    def train(self, until_env_steps: int | None = None, progress=None) -> None:
        """Run until total_env_steps (or `until_env_steps`, for tests of kill and resume)."""
        c = self.config
        stop = min(c.total_env_steps, until_env_steps or c.total_env_steps)
        marks = {"log": time.perf_counter(), "steps": self.env_steps, "updates": self.updates}
        if not self._cleaned:  # staging folders a crashed or killed run left behind
            remove_stale_staging(self.checkpoint_dir, self.warn)
            self._cleaned = True
        while self.env_steps < stop:
            if self._obs is None:
                self._begin_segment()
            before = self.env_steps
            n_updates = self.env.num_envs * c.utd
            if c.overlap:  # learn from the replay so far while the envs step
                actions = self._actions()
                self.env.step_async(actions)
                # learn on the same iterations as without overlap (once this step ends warm-up)
                after = self.env_steps + self.env.num_envs
                if after >= c.warmup_steps and self.replay.size() >= self.batch_size:
                    self._learn(n_updates)
                self._record_step(actions, *self.env.step_wait())
            else:
                self._collect_step()
                if self.env_steps >= c.warmup_steps and self.replay.size() >= self.batch_size:
                    self._learn(n_updates)
            self._on_schedule(before, marks, progress)
        if self.logger is not None:
            self.logger.flush()

    def _on_schedule(self, before: int, marks: dict, progress) -> None:
        """What is due since `before` env steps: a log row, an evaluation, a checkpoint (and
        always at the end), then the progress callback."""
        c = self.config
        if _crossed(before, self.env_steps, c.log_every_steps):
            self._log(marks)
        if _crossed(before, self.env_steps, c.eval_every_steps) and self.evaluate:
            self._evaluate()
        if _crossed(before, self.env_steps, c.checkpoint_every_steps) or (
                self.env_steps >= c.total_env_steps):
            self.save_checkpoint()
        if progress is not None:
            progress(self)

    def _observe(self, obs, critic_obs) -> None:
        """Fresh observations for the agent's normalisers."""
        self.agent.observe(obs, critic_obs)

    def _begin_segment(self) -> None:
        obs, info = self.env.reset(seed=segment_seed(self.config.seed, self.env_steps))
        self._obs = obs
        self._critic_obs = info.get("critic_obs") if self.critic_obs_dim else None
        self._ep_return[:] = 0.0
        self._ep_terms = {}
        self._observe(obs, self._critic_obs)

    def _actions(self) -> np.ndarray:
        if self.env_steps < self.config.warmup_steps:
            n = self.env.num_envs
            return self.rng.uniform(-1.0, 1.0, size=(n, self.act_dim)).astype(np.float32)
        return self.agent.act(self._obs)  # one batched call for every env

    def _collect_step(self) -> None:
        actions = self._actions()
        self._record_step(actions, *self.env.step(actions))

    def _record_step(self, actions, obs, reward, terminated, truncated, info) -> None:
        n = self.env.num_envs
        critic = {}
        if self.critic_obs_dim:
            critic = {"critic_obs": self._critic_obs,
                      "next_critic_obs": info["final_critic_obs"]}
        self.replay.add(self._obs, actions, reward, info["final_obs"],
                        terminated.astype(np.float32), partition=self.fresh_partition, **critic)
        self._obs = obs
        self._critic_obs = info.get("critic_obs") if self.critic_obs_dim else None
        self._observe(obs, self._critic_obs)
        self.env_steps += n
        self._track_episodes(reward, terminated | truncated, info.get("reward_terms", {}))
        if "terrain_level" in info:
            self._terrain_level = float(np.mean(info["terrain_level"]))

    def _learn(self, n_updates: int) -> None:
        batches = self.replay.sample(self.batch_size, self.rng, num_batches=n_updates)
        self.last_metrics = self.agent.update_stacked(batches)
        self.updates += n_updates

    def _track_episodes(self, reward, done, terms: dict) -> None:
        self._ep_return += reward
        for name, value in terms.items():
            self._ep_terms.setdefault(name, np.zeros(self.env.num_envs))
            self._ep_terms[name] += value
        for i in np.flatnonzero(done):
            self._finished.append(float(self._ep_return[i]))
            self._recent = [*self._recent[-19:], float(self._ep_return[i])]
            for name, total in self._ep_terms.items():
                self._finished_terms.setdefault(name, []).append(float(total[i]))
                total[i] = 0.0
            self._ep_return[i] = 0.0
            self.episodes += 1

    # --- logging and evaluation ---
    def recent_return(self) -> float | None:
        return float(np.mean(self._recent)) if self._recent else None

    def _log(self, marks: dict) -> None:
        now = time.perf_counter()
        elapsed = max(now - marks["log"], 1e-9)
        scalars = {"perf/env_steps_per_s": (self.env_steps - marks["steps"]) / elapsed,
                   "perf/updates_per_s": (self.updates - marks["updates"]) / elapsed,
                   "train/episodes": self.episodes}
        marks.update(log=now, steps=self.env_steps, updates=self.updates)
        if self._finished:
            scalars["train/episode_return"] = float(np.mean(self._finished))
            for name, values in self._finished_terms.items():
                scalars[f"reward_terms/{name}"] = float(np.mean(values))
            self._finished, self._finished_terms = [], {}
        if self._terrain_level is not None:
            scalars["train/terrain_level"] = self._terrain_level
        for name, value in getattr(self, "last_metrics", {}).items():
            scalars[f"loss/{name}"] = value
        self.last_scalars = scalars
        if self.logger is not None:
            for tag, value in scalars.items():
                self.logger.scalar(tag, value, self.env_steps)

    def _evaluate(self) -> None:
        result = {"env_steps": self.env_steps, **self.evaluate(self.agent)}
        self.history.append(result)
        if self.logger is not None:
            for key, value in result.items():
                if key != "env_steps" and isinstance(value, int | float):
                    self.logger.scalar(f"eval/{key}", value, self.env_steps)
            self.logger.evaluation(result)

    # --- checkpoints ---
    def save_checkpoint(self) -> Path:
        """Make the logs durable, write a complete checkpoint atomically (checkpoint_folder.py),
        name it in `latest`, drop the oldest past keep_checkpoints, start a new segment."""
        if self.logger is not None:
            self.logger.flush()  # the rows up to this step exist before the checkpoint does
        final = write_checkpoint(self.checkpoint_dir, self.env_steps, self.agent.get_state(),
                                 self.replay.get_state(), self._meta())
        latest = self.checkpoint_dir / "latest"
        try:
            write_atomic(latest, final.name)
        except OSError as err:
            raise disk_error(latest, f"could not name {final.name} as the latest checkpoint "
                             "(the checkpoint itself is complete)", err) from err
        prune(self.checkpoint_dir, self.config.keep_checkpoints, self.warn)
        self._obs = None  # segment boundary: the envs restart from a seed next step
        return final

    def _meta(self) -> dict:
        """trainer.json: everything of the trainer's own a resumed run needs to continue (and
        to log) exactly as an uninterrupted one."""
        return {"format": FORMAT, "env_steps": self.env_steps, "updates": self.updates,
                "episodes": self.episodes, "rng": self.rng.bit_generator.state,
                "config": asdict(self.config), "history": self.history,
                "finished": self._finished, "finished_terms": self._finished_terms,
                "recent": self._recent, "last_metrics": getattr(self, "last_metrics", {})}

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Restore from `path`, or from the newest checkpoint in checkpoint_dir that passes its
        check (each refused one skipped with a sentence through `warn`). Nothing changes
        unless a checkpoint is accepted whole."""
        if path:
            self._restore(Path(path))
            return Path(path)
        folder, _ = newest_usable(self.checkpoint_dir, self._restore, self.warn)
        return folder

    def _restore(self, folder: Path) -> None:
        meta = verify_checkpoint(folder)
        if meta.get("format") not in (FORMAT, LEGACY_FORMAT):
            raise CheckpointError(f"{folder / TRAINER}: format {meta.get('format')!r}, "
                                  f"expected {FORMAT!r}")
        try:
            counters = (int(meta["env_steps"]), int(meta["updates"]), int(meta["episodes"]))
            rng, history = meta["rng"], list(meta["history"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{folder / TRAINER}: lacks the trainer's counters "
                                  f"({err!r})") from err
        replay = ReplayBuffer.from_state(load_arrays(folder / REPLAY),
                                         source=str(folder / REPLAY))
        self.agent.set_state(load_arrays(folder / AGENT), source=str(folder / AGENT))
        self.replay = replay
        self.env_steps, self.updates, self.episodes = counters
        self.history = history
        self.rng.bit_generator.state = rng
        self._finished, self._recent = meta.get("finished", []), meta.get("recent", [])
        self._finished_terms = meta.get("finished_terms", {})
        if meta.get("last_metrics"):
            self.last_metrics = meta["last_metrics"]
        self._obs = None


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path:
    """The newest committed checkpoint: the highest step folder holding trainer.json (hidden
    staging folders of an interrupted write are ignored). Its files are checked when it is
    read (`verify_checkpoint`, `Trainer.load_checkpoint`)."""
    done = step_folders(checkpoint_dir)
    if not done:
        raise CheckpointError(f"{checkpoint_dir}: no complete checkpoint")
    return done[-1]


def _crossed(before: int, after: int, every: int) -> bool:
    return after // every > before // every
