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

Checkpoint layout (`<dir>/<env_steps>/`, written into a hidden temporary folder, fsync'ed,
then renamed into place: the rename is the commit, so every visible folder is complete;
`<dir>/latest` names the newest for people, and resume does not depend on it):
    agent.npz     networks, optimisers, normalisers, temperature, TF RNG (agent.get_state)
    replay.npz    the replay buffer
    trainer.json  counters, NumPy RNG state, config, and the sha256 of both .npz files
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import CheckpointError, _fsync_dir, load_arrays, save_arrays
from .replay import ReplayBuffer

if TYPE_CHECKING:
    from . import Agent

FORMAT = "gaitforge.trainer/1"


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
    def __init__(self, agent: Agent, env, config: TrainConfig, checkpoint_dir: str | os.PathLike,
                 *, evaluate: Callable[[object], dict] | None = None, logger=None):
        """agent: an `Agent` (gaitforge.agents): act, observe, update_stacked,
        get_state/set_state, config.batch_size, critic_obs_dim.
        evaluate(agent) -> dict of numbers, run every eval_every_steps.
        logger: object with scalar(tag, value, step) and flush(), or None."""
        self.agent, self.env, self.config = agent, env, config
        self.checkpoint_dir = Path(checkpoint_dir)
        self.evaluate, self.logger = evaluate, logger
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
        self.history: list[dict] = []  # evaluation results

    # --- the loop ---
    def train(self, until_env_steps: int | None = None, progress=None) -> None:
        """Run until total_env_steps (or `until_env_steps`, for tests of kill and resume)."""
        c = self.config
        stop = min(c.total_env_steps, until_env_steps or c.total_env_steps)
        marks = {"log": time.perf_counter(), "steps": self.env_steps, "updates": self.updates}
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
            if _crossed(before, self.env_steps, c.log_every_steps):
                self._log(marks)
            if _crossed(before, self.env_steps, c.eval_every_steps) and self.evaluate:
                self._evaluate()
            if _crossed(before, self.env_steps, c.checkpoint_every_steps) or (
                    self.env_steps >= c.total_env_steps):
                self.save_checkpoint()
            if progress is not None:
                progress(self)
        if self.logger is not None:
            self.logger.flush()

    def _begin_segment(self) -> None:
        obs, info = self.env.reset(seed=segment_seed(self.config.seed, self.env_steps))
        self._obs = obs
        self._critic_obs = info.get("critic_obs") if self.critic_obs_dim else None
        self._ep_return[:] = 0.0
        self._ep_terms = {}
        self.agent.observe(obs, self._critic_obs)

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
                        terminated.astype(np.float32), **critic)
        self._obs = obs
        self._critic_obs = info.get("critic_obs") if self.critic_obs_dim else None
        self.agent.observe(obs, self._critic_obs)
        self.env_steps += n
        self._track_episodes(reward, terminated | truncated, info.get("reward_terms", {}))

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

    # --- checkpoints ---
    def save_checkpoint(self) -> Path:
        """Write a complete checkpoint atomically, then start a new segment."""
        final = self.checkpoint_dir / f"{self.env_steps:012d}"
        tmp = self.checkpoint_dir / f".tmp-{self.env_steps:012d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_arrays(tmp / "agent.npz", self.agent.get_state())
        save_arrays(tmp / "replay.npz", self.replay.get_state())
        meta = {"format": FORMAT, "env_steps": self.env_steps, "updates": self.updates,
                "episodes": self.episodes, "rng": self.rng.bit_generator.state,
                "config": asdict(self.config), "history": self.history,
                "sha256": {name: _sha256(tmp / name) for name in ("agent.npz", "replay.npz")}}
        _write_atomic(tmp / "trainer.json", json.dumps(meta, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        _write_atomic(self.checkpoint_dir / "latest", final.name)
        done = sorted(p for p in self.checkpoint_dir.glob("[0-9]*") if p.is_dir())
        for old in done[:-self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self._obs = None  # segment boundary: the envs restart from a seed next step
        return final

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Restore from `path`, or from the newest complete checkpoint in checkpoint_dir."""
        folder = Path(path) if path else latest_checkpoint(self.checkpoint_dir)
        meta_path = folder / "trainer.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata: {err}") from err
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path}: format {meta.get('format')!r}, "
                                  f"expected {FORMAT!r}")
        for name, digest in meta["sha256"].items():
            if _sha256(folder / name) != digest:
                raise CheckpointError(f"{folder / name}: sha256 does not match trainer.json "
                                      "(corrupt or altered)")
        self.agent.set_state(load_arrays(folder / "agent.npz"), source=str(folder / "agent.npz"))
        self.replay = ReplayBuffer.from_state(load_arrays(folder / "replay.npz"),
                                              source=str(folder / "replay.npz"))
        self.env_steps, self.updates = meta["env_steps"], meta["updates"]
        self.episodes, self.history = meta["episodes"], meta["history"]
        self.rng.bit_generator.state = meta["rng"]
        self._obs = None
        return folder


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path:
    """The newest complete checkpoint: the highest step folder holding trainer.json (hidden
    temporary folders of an interrupted write are ignored)."""
    checkpoint_dir = Path(checkpoint_dir)
    done = sorted(p for p in checkpoint_dir.glob("[0-9]*") if (p / "trainer.json").is_file())
    if not done:
        raise CheckpointError(f"{checkpoint_dir}: no complete checkpoint")
    return done[-1]


def _crossed(before: int, after: int, every: int) -> bool:
    return after // every > before // every


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
