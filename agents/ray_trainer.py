"""Learning on one machine from collectors on many: the Ray side of the trainer.

`RayTrainer` is the single-machine `Trainer` (same replay, updates, logging, evaluation and
checkpoints) with its collection replaced by `CollectorPool`: N collector actors
(ray_collect.py), each with its own vectorised env and copy of the actor. The learner loop:

    feed idle collectors -> ray.wait for whichever batches are ready -> add them to the
    replay -> learn (in chunks of at most LEARN_CHUNK updates) -> publish new weights

- The learner never waits on a slow collector: `ray.wait` returns whatever batch is ready;
  while it owes updates it only polls (timeout 0).
- Updates per env step are those of the single-machine trainer: every transition received
  after warm-up owes `train.utd` updates. The learner may owe at most one round of batches
  (collectors x batch); beyond that it does not hand collectors new work until it has caught
  up, so collection follows the learner's pace instead of filling the replay ahead of it.
- New weights: one `ray.put` per version (version = the update count when published); each
  collector takes them before its next batch. Policy lag (updates now minus the version that
  collected a batch) goes to TensorBoard as ray/policy_lag_mean and ray/policy_lag_max.
- A collector that dies (killed, or its env raises) is replaced by a new actor with a fresh
  seed stream (`collector_seed(..., incarnation + 1)`). Every batch it delivered stays; the
  batch it was collecting is never delivered; each (collector, incarnation, index) is added
  once at most (`ledger` lists every delivered batch with its checksum). Training carries on.
- Checkpoints are the single-machine trainer's (owed updates are done before each), and
  `load_checkpoint` resumes; collectors then start fresh seed streams from that step count.
  A resumed Ray run is not bit-identical to an uninterrupted one: batches arrive in the
  order the cluster's timing gives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from .ray_collect import Collector, RayConfig, actor_state, collector_seed, import_ray
from .trainer import TrainConfig, Trainer

LEARN_CHUNK = 64  # updates per learner call between two polls of the collectors
_log = logging.getLogger("gaitforge.agents.ray")


class CollectorsSpent(RuntimeError):
    """The collectors failed more often than ray.max_restarts allows (a broken env, a cluster
    that lost its nodes): the run stops, keeping its last checkpoint."""


class CollectorPool:
    """N collector actors, the batch each is collecting, and their restarts."""

    def __init__(self, make_vec_env: Callable[[], object], agent_spec: tuple, critic_obs: bool,
                 config: RayConfig, seed: int, start_env_steps: int,
                 restarts: list[dict] | None = None, preload: bool = True):
        """Start `config.collectors` actors (arguments as for `Collector`); `restarts` (a
        list) collects the restart records."""
        self._ray = ray = import_ray()
        self.config, self.seed, self.start_env_steps = config, seed, start_env_steps
        need, have = config.collectors * config.collector_cpus, ray.cluster_resources().get(
            "CPU", 0.0)
        if need > have:  # the actors would wait for CPUs forever
            raise ValueError(f"ray: {config.collectors} collectors x {config.collector_cpus:g} "
                             f"CPU need {need:g} CPUs but the cluster has {have:g} "
                             "(ray.collectors, ray.collector_cpus)")
        free = ray.available_resources().get("CPU", 0.0)
        if need > free:  # another job holds them: say why nothing arrives yet
            _log.warning("ray: the collectors need %g CPUs, %g are free now (another job "
                         "holds the rest); they start as CPUs free up", need, free)
        self._args = (make_vec_env, agent_spec, critic_obs, config.batch_steps, preload)
        self._cls = ray.remote(Collector)
        self.incarnations = [0] * config.collectors
        self.actors = [self._start(i) for i in range(config.collectors)]
        self.pending: dict = {}  # object ref of a batch -> collector index
        self.idle = set(range(config.collectors))
        # collector, incarnation, error, at (perf_counter when the failure was seen),
        # recover_s (from then to the first batch of its replacement; None while not
        # recovered, and for a second failure before that)
        self.restarts: list[dict] = [] if restarts is None else restarts
        self._failed: dict[int, tuple[float, dict]] = {}  # index -> (when, its restart record)

    def _start(self, i: int):
        seed = collector_seed(self.seed, self.start_env_steps, i, self.incarnations[i])
        opts = {"num_cpus": self.config.collector_cpus, "num_gpus": 0, "max_restarts": 0,
                "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        return self._cls.options(**opts).remote(i, self.incarnations[i], seed, *self._args)

    def submit(self, i: int, weights: tuple[int, object] | None) -> None:
        """Ask collector i for its next batch, with weights (version, ref) if any."""
        version, ref = weights if weights is not None else (-1, None)
        out = self.actors[i].collect.remote(version, [ref] if ref is not None else [])
        self.pending[out] = i
        self.idle.discard(i)

    def wait(self, timeout: float | None) -> list[dict]:
        """The batches ready now (waiting up to `timeout` s for a first one); a collector that
        failed is restarted and goes back to `idle`."""
        ray = self._ray
        if not self.pending:
            return []
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        batches = []
        for ref in ready:
            i = self.pending.pop(ref)
            self.idle.add(i)
            try:
                batch = ray.get(ref)
            except ray.exceptions.RayError as err:
                self._restart(i, err)
                continue
            if i in self._failed:  # the replacement's first batch: recovered
                when, record = self._failed.pop(i)
                record["recover_s"] = time.perf_counter() - when
            batches.append(batch)
        return batches

    def _restart(self, i: int, err: Exception) -> None:
        why = _reason(err, self._ray)
        if len(self.restarts) >= self.config.max_restarts:
            raise CollectorsSpent(f"ray: collector {i} failed ({why}) and the restart budget "
                                  f"(ray.max_restarts = {self.config.max_restarts}) is spent; "
                                  "the run keeps its last checkpoint: fix the cause, then "
                                  "resume it with `gaitforge train --resume RUN`") from err
        self._ray.kill(self.actors[i], no_restart=True)
        self.incarnations[i] += 1
        self.actors[i] = self._start(i)
        record = {"collector": i, "incarnation": self.incarnations[i], "error": why,
                  "at": time.perf_counter(), "recover_s": None}
        self.restarts.append(record)
        self._failed.setdefault(i, (time.perf_counter(), record))
        _log.warning("ray: collector %d failed (%s); restarted with a fresh seed stream "
                     "(incarnation %d, restart %d of at most %d)", i, why,
                     self.incarnations[i], len(self.restarts), self.config.max_restarts)

    def put(self, value):
        """One `ray.put` (an object ref that every collector can fetch)."""
        return self._ray.put(value)

    def describe(self) -> list[dict]:
        """Each collector's `describe()` (waits for the batches in flight first)."""
        return self._ray.get([a.describe.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.pending.clear()


class RayTrainer(Trainer):
    """`Trainer` whose collection runs on Ray collectors (see the module docstring)."""

    def __init__(self, agent, make_vec_env: Callable[[], object], env, config: TrainConfig,
                 ray_config: RayConfig, checkpoint_dir, *, evaluate=None, logger=None,
                 warn=None):
        """make_vec_env: picklable zero-argument factory of one collector's vectorised env.
        env: an env with the same spaces (only `num_envs`, `single_observation_space` and
        `single_action_space` are read; it may be closed). Ray must be connected
        (ray_collect.connect). The rest as for Trainer."""
        super().__init__(agent, env, config, checkpoint_dir, evaluate=evaluate, logger=logger,
                         warn=warn)
        self.make_vec_env, self.ray_config = make_vec_env, ray_config
        self.batch_transitions = env.num_envs * ray_config.batch_steps
        self.ledger: list[dict] = []  # every delivered batch: who, version, size, checksum
        self.duplicates = 0  # batches refused because their key was delivered already
        self.versions = 0  # weights published
        self.restarts: list[dict] = []  # collector restarts (CollectorPool.restarts)
        self.pool: CollectorPool | None = None
        self._seen: set[tuple[int, int, int]] = set()
        self._owed = 0  # updates owed to transitions received after warm-up
        self._lags: list[int] = []
        self._weights: tuple[int, object] | None = None

    def train(self, until_env_steps: int | None = None, progress=None) -> None:
        """Run until total_env_steps (or `until_env_steps`), collecting on Ray."""
        c = self.config
        stop = min(c.total_env_steps, until_env_steps or c.total_env_steps)
        marks = {"log": time.perf_counter(), "steps": self.env_steps, "updates": self.updates}
        spec = (self.agent.algo, self.agent.config, self.obs_dim, self.act_dim)
        self.pool = CollectorPool(self.make_vec_env, spec, bool(self.critic_obs_dim),
                                  self.ray_config, c.seed, self.env_steps, self.restarts,
                                  preload=stop > c.warmup_steps)  # will they act?
        try:
            if self.updates:  # resumed after warm-up: collectors act from the start
                self._publish()
            while self.env_steps < stop:
                self._feed()
                for batch in self.pool.wait(timeout=0.0 if self._owed else 1.0):
                    before = self.env_steps
                    self._receive(batch)
                    self._on_schedule(before, marks, None)
                    if self.env_steps >= stop:
                        break
                self._learn_owed(LEARN_CHUNK)
                if progress is not None:
                    progress(self)
            self._learn_owed()
        finally:
            self.pool.close()
            self.pool = None
        if self.logger is not None:
            self.logger.flush()

    def _feed(self) -> None:
        """Hand idle collectors their next batch unless the learner is a round behind."""
        limit = self.batch_transitions * self.ray_config.collectors * self.config.utd
        for i in sorted(self.pool.idle):
            if self._owed > limit:
                break
            self.pool.submit(i, self._weights)

    def _receive(self, batch: dict) -> None:
        key = (batch["collector"], batch["incarnation"], batch["index"])
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        rows = batch["rows"]
        n = len(rows["reward"])
        self.replay.add(**rows)
        self.agent.observe(rows["obs"], rows.get("critic_obs"))
        self.env_steps += n
        if batch["version"] >= 0:
            self._lags.append(self.updates - batch["version"])
        for episode in batch["episodes"]:
            self._finish_episode(episode)
        self.ledger.append({"collector": key[0], "incarnation": key[1], "index": key[2],
                            "version": batch["version"], "n": n, "checksum": batch["checksum"],
                            "episodes": [e["digest"] for e in batch["episodes"]],
                            "pid": batch["pid"], "node": batch["node"]})
        if self.env_steps >= self.config.warmup_steps and self.replay.size() >= self.batch_size:
            self._owed += n * self.config.utd

    def _finish_episode(self, episode: dict) -> None:
        self._finished.append(episode["return"])
        self._recent = [*self._recent[-19:], episode["return"]]
        for name, total in episode["terms"].items():
            self._finished_terms.setdefault(name, []).append(total)
        self.episodes += 1

    def _learn_owed(self, most: int | None = None) -> None:
        """Do the owed updates (at most `most`, else all), then publish the new weights."""
        n = self._owed if most is None else min(self._owed, most)
        if n <= 0:
            return
        self._learn(n)
        self._owed -= n
        self._publish()

    def _publish(self) -> None:
        if self.pool is not None:  # outside `train` there is no one to publish to
            self._weights = (self.updates, self.pool.put(actor_state(self.agent)))
            self.versions += 1

    def _log(self, marks: dict) -> None:
        super()._log(marks)
        extra = {"ray/weight_versions": self.versions,
                 "ray/collector_restarts": len(self.restarts),
                 "ray/duplicate_batches": self.duplicates}
        if self._lags:
            extra["ray/policy_lag_mean"] = float(np.mean(self._lags))
            extra["ray/policy_lag_max"] = float(np.max(self._lags))
            self._lags = []
        self.last_scalars.update(extra)
        if self.logger is not None:
            for tag, value in extra.items():
                self.logger.scalar(tag, value, self.env_steps)

    def save_checkpoint(self):
        self._learn_owed()  # a checkpoint holds every update its transitions owe
        return super().save_checkpoint()


def _reason(err: Exception, ray) -> str:
    """One short line: the env's exception for a task that raised, else why the actor died."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    line = lines[-1] if isinstance(err, ray.exceptions.RayTaskError) else lines[0]
    return line if len(line) <= 160 else line[:157] + "..."
