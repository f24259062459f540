"""Collection on Ray core: collector actors, each with its own vectorised env and its own copy
of the actor, feeding one learner that keeps the replay (agents/ray_trainer.py), as in Ape-X
(Horgan et al. 2018). Env-generic, like the vectorised env: a collector is handed a picklable
zero-argument factory of a vectorised env (the VecEnv API that agents/trainer.py lists) and
never imports a simulator.

Ray is an optional extra (`pip install 'gaitforge[ray]'`, Ray core only); this module imports
it only inside functions, so the package loads and runs without it.

A collector (`Collector`, made a Ray actor by `ray.remote` in ray_trainer.py):
- sees no GPU (CUDA_VISIBLE_DEVICES="" before TensorFlow loads) and runs TensorFlow on one
  thread (intra- and inter-op); TensorFlow loads on a side thread from the start, while the
  collector steps its env (`preload`), and is first used when weights arrive;
- builds its env and its agent inside the actor: networks are never pickled, weights travel
  as NumPy arrays (`actor_state`: the actor's weights and the observation normaliser), put
  into the object store once per version by the learner;
- acts uniformly at random in [-1, 1] until it has weights (the learner's warm-up), then with
  the exploring actor;
- takes new weights between batches, never within one: every transition of a batch was
  collected by the version the batch names (`version`: the learner's update count when it
  published them; -1 for random actions);
- is deterministic given its seed and the versions it acted with: its env resets, warm-up
  actions and exploration noise all come from `seed`. Each finished episode is reported
  with a sha256 of its transitions, so runs can be compared whatever order batches arrive in.

A batch (what `Collector.collect` returns) is a dict:
    collector, incarnation, index   who sent it: collector number, how often it was restarted
                                    (a restart is a new seed stream), batch number (from 0)
    version                         the weights version that collected it (-1: random actions)
    rows                            the transitions, step-major like the single-machine
                                    trainer's replay.add: obs, action, reward, next_obs,
                                    terminated (float, 1 = true terminal), and critic_obs /
                                    next_critic_obs when asked for
    checksum                        sha256 (hex) of the rows, field by field in that order
    episodes                        one dict per episode finished in this batch: return,
                                    length, terms (per reward term totals), digest (sha256)
    pid, node, collect_s            the actor's process and Ray node; seconds spent stepping
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

INSTALL_HINT = ("Ray is not installed; collection on Ray needs the optional extra: "
                "pip install 'gaitforge[ray]' (Ray core only, not ray[rllib], which pins an "
                "older gymnasium)")
ROW_FIELDS = ("obs", "action", "reward", "next_obs", "terminated")
CRITIC_FIELDS = ("critic_obs", "next_critic_obs")


@dataclass(frozen=True)
class RayConfig:
    """The run config's `ray:` section: collection on a Ray cluster, learning here.

    With `enabled`, each collector holds `vec_env.num_envs` envs in its own process
    (`vec_env.workers` and `train.overlap` do not apply: collection always runs beside
    learning)."""

    enabled: bool = False
    # "": start Ray on this machine; "auto": the cluster `ray start` runs here; "HOST:PORT":
    # the head of a cluster (`ray start --head` printed it)
    address: str = ""
    collectors: int = 2  # collector actors
    batch_steps: int = 32  # vectorised env steps per batch a collector sends
    collector_cpus: float = 1.0  # Ray CPUs each collector holds
    max_restarts: int = 10  # collector restarts in one run before the learner gives up

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.address, str):
            raise ValueError(f"address must be a string ('', 'auto' or HOST:PORT), "
                             f"got {self.address!r}")
        for name, least in (("collectors", 1), ("batch_steps", 1), ("max_restarts", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        cpus = self.collector_cpus
        if isinstance(cpus, bool) or not isinstance(cpus, int | float) or not cpus > 0:
            raise ValueError(f"collector_cpus must be a number > 0, got {cpus!r}")


def import_ray():
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return ray


def connect(address: str = "") -> bool:
    """Join Ray: the session this process already has, else `address` ("" starts Ray here).
    Returns whether this call connected (so the caller shuts Ray down when done)."""
    import logging

    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    return True


def collector_seed(run_seed: int, start_env_steps: int, index: int, incarnation: int) -> int:
    """Seed of one collector's stream: a run started (or resumed) at `start_env_steps` gives
    collector `index` in its `incarnation` (0, then one more per restart) its own stream."""
    ss = np.random.SeedSequence([run_seed, start_env_steps, index, incarnation])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def collector_streams(seed: int) -> tuple[int, int, int]:
    """(env reset seed, NumPy seed of the warm-up actions, agent seed of the exploration noise)
    of a collector with `seed`; env i of its vectorised env is reset with env seed + i."""
    states = np.random.SeedSequence(seed).generate_state(3)
    return tuple(int(s & 0x7FFFFFFF) for s in states)


def actor_state(agent) -> dict[str, np.ndarray]:
    """What acting needs from an OffPolicyAgent, as plain arrays: the actor's weights
    (`actor/...`) and the observation normaliser (`obs_norm/...`)."""
    from .checkpoint import variables_state
    from .networks import named_variables

    state = variables_state(named_variables({"actor": agent.actor}))
    state.update({f"obs_norm/{k}": v for k, v in agent.obs_norm.get_state().items()})
    return state


def load_actor_state(agent, state: Mapping[str, np.ndarray], source: str = "weights") -> None:
    """Inverse of `actor_state` (checks every key and shape before assigning)."""
    from .checkpoint import assign_state
    from .networks import named_variables

    assign_state(named_variables({"actor": agent.actor}), state, source=source)
    agent.obs_norm.set_state({k[len("obs_norm/"):]: v for k, v in state.items()
                              if k.startswith("obs_norm/")})


def rows_checksum(rows: Mapping[str, np.ndarray]) -> str:
    """sha256 (hex) of a batch's rows: each field present, in ROW_FIELDS + CRITIC_FIELDS order,
    as contiguous float32 bytes."""
    h = hashlib.sha256()
    for field in (*ROW_FIELDS, *CRITIC_FIELDS):
        if field in rows:
            h.update(np.ascontiguousarray(rows[field], np.float32).tobytes())
    return h.hexdigest()


class _Episodes:
    """Per-env running return, reward-term totals, length and sha256 of each episode."""

    def __init__(self, n: int):
        self.n = n
        self.ret = np.zeros(n)
        self.length = np.zeros(n, np.int64)
        self.terms: dict[str, np.ndarray] = {}
        self.hashes = [hashlib.sha256() for _ in range(n)]

    def step(self, step_rows: Mapping[str, np.ndarray], done: np.ndarray,
             terms: Mapping[str, np.ndarray]) -> list[dict]:
        """Account one vectorised step; the episodes it finished."""
        self.ret += step_rows["reward"]
        self.length += 1
        for name, value in terms.items():
            self.terms.setdefault(name, np.zeros(self.n))
            self.terms[name] += value
        for j in range(self.n):
            for field in ROW_FIELDS:
                self.hashes[j].update(np.asarray(step_rows[field][j], np.float32).tobytes())
        finished = []
        for j in np.flatnonzero(done):
            finished.append({"return": float(self.ret[j]), "length": int(self.length[j]),
                             "terms": {k: float(v[j]) for k, v in self.terms.items()},
                             "digest": self.hashes[j].hexdigest()})
            self.ret[j], self.length[j], self.hashes[j] = 0.0, 0, hashlib.sha256()
            for total in self.terms.values():
                total[j] = 0.0
        return finished


class Collector:
    """One collector: its own vectorised env and its own copy of the actor (a Ray actor;
    see the module docstring)."""

    def __init__(self, index: int, incarnation: int, seed: int,
                 make_vec_env: Callable[[], object], agent_spec: tuple, critic_obs: bool,
                 batch_steps: int, preload: bool = True):
        """agent_spec: (algo, agent config, obs_dim, act_dim) of the learner's agent.
        critic_obs: send critic_obs / next_critic_obs (the learner has an asymmetric critic).
        preload: load TensorFlow and build the agent on a side thread from the start (else
        when the first weights arrive; a run that never leaves warm-up needs neither)."""
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before TensorFlow loads: no GPU, ever
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.index, self.incarnation, self.seed = index, incarnation, seed
        self.agent_spec, self.critic_obs, self.batch_steps = agent_spec, critic_obs, batch_steps
        env_seed, rng_seed, self._agent_seed = collector_streams(seed)
        self.rng = np.random.default_rng(rng_seed)
        self.agent, self.version, self.batches = None, -1, 0
        # TensorFlow loads and the agent builds on a thread while warm-up steps the env here:
        # seconds that would otherwise stall every collector when the first weights arrive
        self._building = concurrent.futures.ThreadPoolExecutor(1).submit(self._build_agent) \
            if preload else None
        self.env = make_vec_env()
        self.act_dim = self.env.single_action_space.shape[0]
        self._obs, info = self.env.reset(seed=env_seed)
        self._critic = info.get("critic_obs") if critic_obs else None
        self._episodes = _Episodes(self.env.num_envs)

    def collect(self, version: int, weights: list) -> dict:
        """`batch_steps` vectorised steps with the weights of `version`. `weights` holds the
        object ref of their `actor_state` (or the arrays themselves, outside Ray), in a list
        so that Ray passes the ref instead of fetching the arrays for every batch: they are
        fetched once per new version."""
        if version != self.version and weights:
            state = weights[0]
            if not isinstance(state, Mapping):
                import ray

                state = ray.get(state)
            self._load(state)
            self.version = version
        start = time.perf_counter()
        steps, episodes = [], []
        for _ in range(self.batch_steps):
            step_rows, done, terms = self._step()
            steps.append(step_rows)
            episodes += self._episodes.step(step_rows, done, terms)
        rows = {k: np.concatenate([s[k] for s in steps]) for k in steps[0]}
        batch = {"collector": self.index, "incarnation": self.incarnation,
                 "index": self.batches, "version": self.version, "rows": rows,
                 "checksum": rows_checksum(rows), "episodes": episodes, "pid": os.getpid(),
                 "node": _node_id(), "collect_s": time.perf_counter() - start}
        self.batches += 1
        return batch

    def _step(self) -> tuple[dict, np.ndarray, dict]:
        if self.agent is None:
            actions = self.rng.uniform(-1.0, 1.0, (self.env.num_envs, self.act_dim))
            actions = actions.astype(np.float32)
        else:
            actions = self.agent.act(self._obs)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        rows = {"obs": self._obs, "action": actions, "reward": reward,
                "next_obs": info["final_obs"], "terminated": terminated.astype(np.float32)}
        if self.critic_obs:
            rows["critic_obs"], rows["next_critic_obs"] = self._critic, info["final_critic_obs"]
            self._critic = info["critic_obs"]
        self._obs = obs
        return rows, terminated | truncated, info.get("reward_terms", {})

    def _load(self, state: Mapping[str, np.ndarray]) -> None:
        if self.agent is None:
            self.agent = self._building.result() if self._building else self._build_agent()
        load_actor_state(self.agent, state, source=f"collector {self.index} weights")

    def _build_agent(self):
        import tensorflow as tf

        from . import make_agent

        try:  # one thread, no GPU: possible only before TensorFlow runs its first op, which
            # in an actor is now (in a process that ran TensorFlow before, it stays as it was)
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass
        algo, config, obs_dim, act_dim = self.agent_spec
        # the actor only: no privileged critic input here
        config = dataclasses.replace(config, asymmetric_critic=False)
        return make_agent(algo, config, obs_dim, act_dim, seed=self._agent_seed)

    def describe(self) -> dict:
        """Where and how this collector runs (for tests and logs)."""
        import sys

        if self._building is not None:
            self._building.result()  # TensorFlow is set up once the agent is built
        out = {"pid": os.getpid(), "node": _node_id(),
               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "version": self.version}
        if "tensorflow" in sys.modules:
            import tensorflow as tf

            out["tf_threads"] = (tf.config.threading.get_intra_op_parallelism_threads(),
                                 tf.config.threading.get_inter_op_parallelism_threads())
            out["tf_gpus"] = [d.name for d in tf.config.list_logical_devices("GPU")]
        if out["node"]:
            import ray

            out["ray_gpu_ids"] = list(ray.get_gpu_ids())
        return out

    def env_call(self, name: str, *args, **kwargs) -> list:
        """`VecEnv.call` on this collector's env (e.g. to ask the envs how they run)."""
        return self.env.call(name, *args, **kwargs)

    def close(self) -> None:
        if self._building is not None:
            concurrent.futures.wait([self._building])  # no thread left behind
        self.env.close()


def _node_id() -> str:
    """The Ray node this runs on ("" outside Ray)."""
    try:
        import ray
    except ImportError:
        return ""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
