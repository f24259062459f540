"""Batched environment over N single gymnasium-API envs, in-process or in subprocess workers.

``VecEnv`` knows nothing about robots: it takes a list of env factories (picklable
zero-arg callables, e.g. ``functools.partial`` of a module-level function; closures
and lambdas also work, as factories are sent with cloudpickle) and steps the envs
as one batch.

    with VecEnv([partial(make_env, cfg)] * 8, workers=2, seed=0) as venv:
        obs, info = venv.reset()
        obs, reward, terminated, truncated, info = venv.step(actions)

Constructor
    ``VecEnv(env_fns, workers=0, seed=None, *, obs_info_keys=("critic_obs",),
    start_method="spawn")``

    - ``workers=0``: all envs live in this process. ``workers=k >= 1``: k subprocess
      workers; worker w holds a contiguous slice of the envs (sizes differ by at most
      one; worker 0 gets the larger slices) and steps them in a loop.
    - ``seed``: the seed of the first ``reset()`` if that call passes none (it is
      used at most once, and dropped if the first ``reset()`` passes its own seed).
    - ``start_method``: ``"spawn"`` or ``"forkserver"``; never ``fork`` (TensorFlow in
      the parent is not fork-safe). Unlike plain multiprocessing, workers do NOT
      re-import the parent's ``__main__`` (so a script that imports TensorFlow does
      not load it into every worker); factories defined in ``__main__`` still work,
      as cloudpickle sends them by value, but side effects of the main script (e.g. a
      gymnasium ``register`` call there) do not happen in workers: put such code in an
      importable module.
    - Every env must have the same observation and action space as env 0, else
      ``ValueError``. ``env_fns`` empty, ``workers < 0`` or ``workers > len(env_fns)``
      also give ``ValueError``.

Attributes: ``num_envs``, ``workers``, ``single_observation_space``,
``single_action_space`` (those of env 0), and ``single_critic_observation_space``: env 0's
``critic_observation_space`` (the space of one row of ``info["critic_obs"]``, privileged
state for an asymmetric critic), or None where the envs declare none. Every env must have
the same critic observation space as env 0, else ``ValueError``.

``VecEnvConfig(num_envs, workers)`` is the run config's ``vec_env:`` section:
``VecEnv([factory] * cfg.num_envs, workers=cfg.workers)``.

``reset(seed=None, options=None) -> (obs, info)``
    Resets every env. With an int seed, env i is reset with ``seed + i``; with
    ``None`` (and no constructor seed pending) the envs are reset unseeded, i.e. they
    continue their own RNG streams. ``options`` goes unchanged to every env.

``step(actions) -> (obs, reward, terminated, truncated, info)``
    ``actions`` has shape ``(num_envs, *single_action_space.shape)`` (else
    ``ValueError`` naming the expected shape) and is cast to the action space's
    dtype; env i receives its own copy of row i.

Arrays returned (always fresh copies; nothing aliases internal or shared buffers):
    obs          (N, *obs_shape) float32 (cast from the env's observation)
    reward       (N,) float32 (cast from the env's reward)
    terminated   (N,) bool
    truncated    (N,) bool

Same-step autoreset: when env i terminates or truncates, ``env.reset()`` is called at
once with no seed and no options, ``obs[i]`` is the FIRST observation of the new
episode, and:
    info["final_obs"]   (N, *obs_shape) float32: the true last observation of the
                        finished episode; rows of unfinished envs equal ``obs``.
    info["done"]        (N,) bool: ``terminated | truncated``.
Terminated and truncated stay separate flags. The step-info keys "final_obs" and
"done" are set by the VecEnv (an env's own values under these names are replaced).

Info contract. The single envs return info dicts with the same keys in every env
(for a given call: step infos are compared with step infos, reset infos with reset
infos), whose values are numbers, fixed-size numpy arrays or (nested) dicts of these.
The VecEnv stacks them along a new leading axis N; nested dicts stay nested:
``info["reward_terms"]["tracking_lin_vel"]`` has shape (N,), ``info["critic_obs"]``
has shape (N, P). Python floats stack as float64, ints as int64, bools as bool.

- ``step`` info is the stacked info of the step just taken, also for finished envs:
  ``info["reward_terms"]`` always describes the transition that produced ``reward``.
  The info returned by the autoreset's ``reset()`` is dropped, except:
- Observation-aligned keys (``obs_info_keys``, default ``("critic_obs",)``; a key is
  used only if the step info has it) describe the observation beside them. For a
  finished env, ``info[key][i]`` is taken from the reset info of the new episode (so
  it matches ``obs[i]``; a missing key there is an error), and the terminal value is
  in ``info["final_" + key][i]``, whose rows of unfinished envs equal ``info[key]``
  (the same rule as ``final_obs``).
- ``reset`` info is the stacked reset info of all envs.

``call(name, *args, **kwargs) -> list``
    Calls method ``name`` on every env (through wrappers, via ``get_wrapper_attr``)
    and returns the results in env order; a non-callable attribute is returned as is.

``close()``: idempotent; the VecEnv is also a context manager, and a garbage-collected
or forgotten VecEnv is closed at exit.

Subprocess workers. Observations, final observations, actions, rewards and the two
flags live in one ``multiprocessing.shared_memory`` block; a pipe per worker carries
only commands and the small stacked info dicts. ``step`` writes the actions, sends
"step" to every worker, then waits for all (workers step in parallel). Results are
bitwise identical to ``workers=0`` and to N single envs stepped by hand with the same
seeds, because both modes run the same per-env code (``EnvGroup``; that and the workers,
pipes and shared memory live in ``sim.vec_workers``).

Errors. In-process (``workers=0``), an env's exception propagates unchanged. In
workers, an exception in an env constructor, ``reset``, ``step`` or ``call`` -- or a
worker that dies (``os._exit``, a signal) -- raises ``VecEnvWorkerError`` (a
``RuntimeError``) whose message holds the worker's formatted traceback (or exit
code), after every worker has been shut down and the shared memory freed. The
VecEnv is closed afterwards: later calls raise ``RuntimeError``. Shutdown never
hangs on a dead worker: the parent waits on the pipes and process sentinels
together, and joins with a timeout, then terminates and kills.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium
import numpy as np

from .vec_workers import (
    EnvGroup,
    VecEnvWorkerError,
    WorkerPool,
    buffer_layout,
    buffer_views,
    concat_infos,
)

__all__ = ["VecEnv", "VecEnvConfig", "VecEnvWorkerError"]


@dataclass(frozen=True)
class VecEnvConfig:
    """How many envs collect in parallel, and in how many processes (the run config's
    ``vec_env:`` section)."""

    num_envs: int = 4  # env copies stepped as one batch
    workers: int = 0  # subprocess workers holding them (0: all in this process)

    def __post_init__(self):
        for name, least in (("num_envs", 1), ("workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                kind = "a positive integer" if least else "an integer >= 0"
                raise ValueError(f"{name} must be {kind}, got {value!r}")
        if self.workers > self.num_envs:
            raise ValueError(f"workers ({self.workers}) must not exceed num_envs "
                             f"({self.num_envs})")


# ----------------------------------------------------------------------------- VecEnv


class VecEnv:
    """N single envs stepped as one batch; see the module docstring for the contract."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gymnasium.Env]],
        workers: int = 0,
        seed: int | None = None,
        *,
        obs_info_keys: Sequence[str] = ("critic_obs",),
        start_method: str = "spawn",
    ):
        env_fns = list(env_fns)
        if not env_fns:
            raise ValueError("env_fns is empty: need at least one env factory")
        if not isinstance(workers, int | np.integer) or isinstance(workers, bool):
            raise ValueError(f"workers must be an int, got {workers!r}")
        if workers < 0 or workers > len(env_fns):
            raise ValueError(
                f"workers must be in [0, num_envs={len(env_fns)}] (0 = in-process), got {workers}"
            )
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"start_method must be 'spawn' or 'forkserver', got {start_method!r} "
                "(fork is unsafe with TensorFlow loaded in the parent)"
            )
        self.num_envs = len(env_fns)
        self.workers = int(workers)
        self._pending_seed = seed
        self._closed = False
        self._needs_reset = True
        self._stepping = False  # between step_async and step_wait
        self._bufs: dict[str, np.ndarray] = {}  # views; cleared on close
        self._group: EnvGroup | None = None
        self._pool: WorkerPool | None = None
        if self.workers == 0:
            self._group = EnvGroup(env_fns, obs_info_keys)
            self._finalizer = weakref.finalize(self, self._group.close)
            self._setup(self._group.spaces())
            return
        self._pool = WorkerPool(env_fns, self.workers, obs_info_keys, self._bufs, start_method)
        self._finalizer = weakref.finalize(self, self._pool.shutdown)
        parts = self._pool_request("construct", send=False)
        self._setup([s for part in parts for s in part])

    def _setup(self, spaces: list) -> None:
        """Check the spaces of all envs and allocate the result buffers."""
        try:
            obs_space, act_space, critic_space = spaces[0]
            for i, (o, a, c) in enumerate(spaces):
                if o != obs_space or a != act_space:
                    raise ValueError(
                        f"env {i} has spaces ({o}, {a}) but env 0 has ({obs_space}, "
                        f"{act_space}); all envs must share their spaces"
                    )
                if c != critic_space:
                    raise ValueError(
                        f"env {i} has critic observation space {c} but env 0 has "
                        f"{critic_space}; all envs must share their spaces"
                    )
            for what, space in (("observation", obs_space), ("action", act_space),
                                ("critic observation", critic_space)):
                if space is not None and getattr(space, "shape", None) is None:
                    raise ValueError(f"the {what} space {space} has no fixed shape")
        except ValueError:
            self.close()
            raise
        self.single_observation_space, self.single_action_space = obs_space, act_space
        self.single_critic_observation_space = critic_space
        layout, nbytes = buffer_layout(self.num_envs, obs_space, act_space)
        if self._pool is None:
            self._bufs.update(buffer_views(bytearray(nbytes), layout))
            self._group.bufs = self._bufs
        else:
            shm = self._pool.create_shm(nbytes)
            self._bufs.update(buffer_views(shm.buf, layout))
            self._pool_request(
                "attach", [(shm.name, layout, lo, hi) for lo, hi in self._pool.slices]
            )
        self._act_shape = self._bufs["actions"].shape

    # -- API

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        self._check_open()
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        else:
            self._pending_seed = None
        seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        if self._pool is None:
            info = self._group.reset(seeds, options)
        else:
            parts = self._pool_request(
                "reset", [(seeds[lo:hi], options) for lo, hi in self._pool.slices]
            )
            info = concat_infos(parts, "reset info")
        self._needs_reset = False
        return self._bufs["obs"].copy(), info

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions) -> None:
        """Start a step; with workers the envs step in their processes while the caller goes
        on (e.g. with a gradient update) until `step_wait`. In-process, the step happens in
        `step_wait`."""
        self._check_open()
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        if self._stepping:
            raise RuntimeError("step_async() twice without step_wait()")
        actions = np.asarray(actions)
        if actions.shape != self._act_shape:
            raise ValueError(
                f"actions must have shape {self._act_shape} (num_envs, *action_shape), "
                f"got {actions.shape}"
            )
        self._bufs["actions"][...] = actions  # cast to the action space's dtype
        if self._pool is not None:
            try:
                self._pool.send("step")
            except BaseException:
                self.close()
                raise
        self._stepping = True

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if not self._stepping:
            raise RuntimeError("step_wait() without step_async()")
        self._stepping = False
        b = self._bufs
        if self._pool is None:
            info = self._group.step()
        else:
            info = concat_infos(self._pool_request("step", send=False), "step info")
        obs = b["obs"].copy()
        terminated, truncated = b["terminated"].copy(), b["truncated"].copy()
        info["final_obs"] = b["final_obs"].copy()
        info["done"] = terminated | truncated
        return obs, b["reward"].copy(), terminated, truncated, info

    def call(self, name: str, *args, **kwargs) -> list:
        """Call method ``name`` on every env; results in env order."""
        self._check_open()
        if self._pool is None:
            return self._group.call(name, args, kwargs)
        parts = self._pool_request("call", [(name, args, kwargs)] * self.workers)
        return [r for part in parts for r in part]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bufs.clear()  # drop the views into shared memory before it is unmapped
        self._finalizer()

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"workers={self.workers}"
        return f"VecEnv(num_envs={self.num_envs}, {state})"

    # -- internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this VecEnv is closed")

    def _pool_request(self, cmd: str, args: Sequence | None = None, send: bool = True) -> list:
        """Send cmd to every worker and gather the replies; on any failure (a worker
        error, or e.g. KeyboardInterrupt while waiting) close everything and re-raise."""
        try:
            return self._pool.request(cmd, args) if send else self._pool.gather(cmd)
        except BaseException:
            self.close()
            raise
