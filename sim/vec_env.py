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
``single_action_space`` (those of env 0).

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
seeds, because both modes run the same per-env code (``_EnvGroup``).

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

import contextlib
import multiprocessing as mp
import os
import secrets
import signal
import sys
import traceback
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from multiprocessing import connection, shared_memory
from typing import Any

import cloudpickle
import gymnasium
import numpy as np

__all__ = ["VecEnv", "VecEnvWorkerError"]

_ALIGN = 64  # bytes; every shared array starts on a cache-line boundary
_JOIN_TIMEOUT_S = 5.0
_UNMAPPABLE: list = []  # unlinked blocks whose mapping a stray view still holds


class VecEnvWorkerError(RuntimeError):
    """An env in a subprocess worker raised, or the worker died."""


# --------------------------------------------------------------------------- buffers


def _layout(n: int, obs_space: gymnasium.Space, act_space: gymnasium.Space):
    """Byte offsets of the shared arrays: name -> (offset, shape, dtype); total size."""
    specs = [
        ("obs", (n, *obs_space.shape), np.dtype(np.float32)),
        ("final_obs", (n, *obs_space.shape), np.dtype(np.float32)),
        ("actions", (n, *act_space.shape), np.dtype(act_space.dtype)),
        ("reward", (n,), np.dtype(np.float32)),
        ("terminated", (n,), np.dtype(np.bool_)),
        ("truncated", (n,), np.dtype(np.bool_)),
    ]
    layout, offset = {}, 0
    for name, shape, dtype in specs:
        layout[name] = (offset, shape, dtype.str)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        offset += -(-max(nbytes, 1) // _ALIGN) * _ALIGN
    return layout, offset


def _views(buf, layout) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype=np.dtype(dt), buffer=buf, offset=off)
        for name, (off, shape, dt) in layout.items()
    }


# ------------------------------------------------------------------------ info stacking


def _stack_infos(infos: Sequence[Mapping], where: str = "info") -> dict:
    """Stack per-env info dicts into arrays with leading dim len(infos)."""
    keys = infos[0].keys()
    for i, d in enumerate(infos):
        if d.keys() != keys:
            raise ValueError(
                f"{where}: env {i} has keys {sorted(d)} but env 0 has {sorted(keys)}; "
                "every env must return the same info keys"
            )
    out = {}
    for k in keys:
        values = [d[k] for d in infos]
        if isinstance(values[0], Mapping):
            out[k] = _stack_infos(values, f"{where}[{k!r}]")
        elif isinstance(values[0], float | int | bool | np.number | np.bool_):
            out[k] = np.array(values)  # scalars (reward terms): one call, not one per env
        else:
            try:
                out[k] = np.stack([np.asarray(v) for v in values])
            except ValueError as e:
                raise ValueError(f"{where}[{k!r}]: cannot stack values: {e}") from None
    return out


def _concat_infos(parts: Sequence[Mapping], where: str = "info") -> dict:
    """Concatenate stacked info dicts of consecutive env slices (one per worker)."""
    if len(parts) == 1:
        return dict(parts[0])
    keys = parts[0].keys()
    for w, d in enumerate(parts):
        if d.keys() != keys:
            raise ValueError(
                f"{where}: envs of worker {w} have keys {sorted(d)} but worker 0's have "
                f"{sorted(keys)}; every env must return the same info keys"
            )
    return {
        k: _concat_infos([d[k] for d in parts], f"{where}[{k!r}]")
        if isinstance(parts[0][k], Mapping)
        else np.concatenate([d[k] for d in parts])
        for k in keys
    }


# -------------------------------------------------------------------- per-env stepping


class _EnvGroup:
    """A slice of envs that read actions from and write results into arrays.

    Used as is for ``workers=0`` and inside every worker, so both modes run the same
    code and give bitwise identical results.
    """

    def __init__(self, env_fns: Sequence[Callable[[], Any]], obs_info_keys: Sequence[str]):
        self.envs: list = []
        try:
            for fn in env_fns:
                self.envs.append(fn())
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise
        self.obs_info_keys = tuple(obs_info_keys)
        self.bufs: dict[str, np.ndarray] = {}

    def spaces(self) -> list[tuple[gymnasium.Space, gymnasium.Space]]:
        return [(env.observation_space, env.action_space) for env in self.envs]

    def reset(self, seeds: Sequence[int | None], options) -> dict:
        obs_buf, infos = self.bufs["obs"], []
        for j, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs, info = env.reset(seed=seed, options=options)
            obs_buf[j] = obs
            infos.append(info)
        return _stack_infos(infos, "reset info")

    def step(self) -> dict:
        b = self.bufs
        actions, obs_buf, final_buf = b["actions"], b["obs"], b["final_obs"]
        reward, terminated, truncated = b["reward"], b["terminated"], b["truncated"]
        infos = []
        for j, env in enumerate(self.envs):
            obs, rew, term, trunc, info = env.step(actions[j].copy())
            final_buf[j] = obs
            reward[j] = rew
            terminated[j] = term
            truncated[j] = trunc
            keys = [k for k in self.obs_info_keys if k in info]
            if keys:
                info = dict(info)
                for k in keys:
                    info["final_" + k] = info[k]
            if term or trunc:
                obs, reset_info = env.reset()
                for k in keys:
                    if k not in reset_info:
                        raise ValueError(
                            f"info key {k!r} is in the step info but not in the reset info; "
                            "observation-aligned info keys must be in both"
                        )
                    info[k] = reset_info[k]
            obs_buf[j] = obs
            infos.append(info)
        return _stack_infos(infos, "step info")

    def call(self, name: str, args, kwargs) -> list:
        results = []
        for env in self.envs:
            get = getattr(env, "get_wrapper_attr", None)
            attr = get(name) if get is not None else getattr(env, name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return results

    def close(self) -> None:
        errors = []
        for env in self.envs:
            try:
                env.close()
            except Exception as e:  # close every env even if one fails
                errors.append(e)
        self.envs = []
        self.bufs = {}
        if errors:
            raise errors[0]


# ------------------------------------------------------------------------------ worker


def _worker_main(conn, fns_bytes: bytes, obs_info_keys) -> None:
    """Subprocess loop: build the envs, then serve commands until "close" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    group, shm, cmd = None, None, "construct"
    try:
        group = _EnvGroup(cloudpickle.loads(fns_bytes), obs_info_keys)
        conn.send(("ok", group.spaces()))
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:  # parent is gone
                break
            if cmd == "step":
                result = group.step()
            elif cmd == "reset":
                result = group.reset(*arg)
            elif cmd == "attach":
                name, layout, lo, hi = arg
                shm = shared_memory.SharedMemory(name=name)
                group.bufs = {k: v[lo:hi] for k, v in _views(shm.buf, layout).items()}
                result = None
            elif cmd == "call":
                result = group.call(*arg)
            elif cmd == "close":
                group.close()
                group = None
                conn.send(("closed", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", result))
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", (cmd, traceback.format_exc())))
    finally:
        if group is not None:
            with contextlib.suppress(Exception):
                group.close()
        if shm is not None:
            with contextlib.suppress(BufferError):
                shm.close()
        conn.close()


class _WorkerPool:
    """Processes, pipes and shared memory of the subprocess mode; shutdown is idempotent."""

    def __init__(self, ctx, slices, fns_bytes, obs_info_keys, views: dict):
        self.slices = slices
        self.views = views  # the VecEnv's dict of views into shm; cleared before unmapping
        self.procs, self.conns = [], []
        self.shm: shared_memory.SharedMemory | None = None
        self.closed = False
        for w, fb in enumerate(fns_bytes):
            parent_conn, child_conn = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=_worker_main,
                args=(child_conn, fb, tuple(obs_info_keys)),
                name=f"VecEnvWorker-{w}",
                daemon=True,
            )
            try:
                with _main_module_hidden():
                    proc.start()
            except BaseException:
                parent_conn.close()
                self.shutdown()
                raise
            finally:
                child_conn.close()  # so the parent sees EOF when the worker dies
            self.procs.append(proc)
            self.conns.append(parent_conn)

    def describe(self, w: int) -> str:
        lo, hi = self.slices[w]
        return f"worker {w} (pid {self.procs[w].pid}, envs {lo}..{hi - 1})"

    def request(self, cmd: str, args: Sequence | None = None) -> list:
        """Send cmd to all workers (args[w] to worker w), then gather all replies."""
        for w, conn in enumerate(self.conns):
            # A dead worker's pipe raises here; gather reports it with its exit code.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
                conn.send((cmd, None if args is None else args[w]))
        return self.gather(cmd)

    def gather(self, cmd: str) -> list:
        results: list = [None] * len(self.conns)
        pending = dict(enumerate(self.conns))
        errors: list[str] = []
        while pending:
            waitables = list(pending.values()) + [self.procs[w].sentinel for w in pending]
            ready = set(connection.wait(waitables))
            for w in list(pending):
                conn, proc = pending[w], self.procs[w]
                if conn not in ready and proc.sentinel not in ready:
                    continue
                try:
                    if conn not in ready and not conn.poll():
                        raise EOFError
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    del pending[w]
                    proc.join(_JOIN_TIMEOUT_S)
                    errors.append(f"{self.describe(w)} died during {cmd!r}{_exit_text(proc)}")
                    continue
                del pending[w]
                if status == "ok":
                    results[w] = payload
                else:
                    where, tb = payload
                    errors.append(
                        f"{self.describe(w)} raised during {where!r}; "
                        f"worker traceback:\n{tb.rstrip()}"
                    )
        if errors:
            raise VecEnvWorkerError("\n\n".join(errors))
        return results

    def create_shm(self, nbytes: int) -> shared_memory.SharedMemory:
        name = f"gaitforge_vec_{os.getpid()}_{secrets.token_hex(6)}"
        self.shm = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
        return self.shm

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            with contextlib.suppress(OSError, EOFError):
                conn.send(("close", None))
        for conn, proc in zip(self.conns, self.procs, strict=True):
            _drain_until_closed(conn, proc)
            proc.join(_JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.terminate()
                proc.join(_JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
            proc.close()
        # Workers are gone, so none can attach (and register the block) after the unlink.
        self.views.clear()
        if self.shm is not None:
            try:
                self.shm.close()
            except BufferError:  # someone still holds a view: keep the mapping, quietly
                _UNMAPPABLE.append(self.shm)
            self.shm.unlink()
            self.shm = None


@contextlib.contextmanager
def _main_module_hidden():
    """Keep spawn / forkserver workers from re-running the parent's ``__main__``.

    multiprocessing normally re-imports the main script in every child; a training
    script or CLI that imports TensorFlow at the top would then load it in every
    worker (seconds and hundreds of MB each). Workers need nothing from ``__main__``:
    their only inputs are the env factories, which cloudpickle ships by value when
    they are defined there. So, while a worker is being started, ``sys.modules``
    shows multiprocessing a bare ``__main__`` with neither ``__spec__`` nor ``__file__``.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


def _drain_until_closed(conn, proc) -> None:
    """Read and drop replies (e.g. of an interrupted step) until the close reply or EOF."""
    while True:
        try:
            ready = connection.wait([conn, proc.sentinel], _JOIN_TIMEOUT_S)
            if not ready or (conn not in ready and not conn.poll()):
                return  # hung, or dead with nothing left to read
            status, _ = conn.recv()
        except Exception:  # EOF, a broken pipe, or a reply that cannot be unpickled
            return
        if status != "ok":  # "closed", or "error" from closing the envs
            return


def _exit_text(proc) -> str:
    code = proc.exitcode
    if code is None:
        return ""
    if code < 0:
        try:
            return f" (killed by signal {signal.Signals(-code).name})"
        except ValueError:
            return f" (killed by signal {-code})"
    return f" (exit code {code})"


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
        self._group: _EnvGroup | None = None
        self._pool: _WorkerPool | None = None
        if self.workers == 0:
            self._group = _EnvGroup(env_fns, obs_info_keys)
            self._finalizer = weakref.finalize(self, self._group.close)
            self._setup(self._group.spaces())
            return
        sizes = [self.num_envs // self.workers] * self.workers
        for w in range(self.num_envs % self.workers):
            sizes[w] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        slices = list(zip(bounds[:-1], bounds[1:], strict=True))
        fns_bytes = [cloudpickle.dumps(env_fns[lo:hi]) for lo, hi in slices]
        ctx = mp.get_context(start_method)
        self._pool = _WorkerPool(ctx, slices, fns_bytes, obs_info_keys, self._bufs)
        self._finalizer = weakref.finalize(self, self._pool.shutdown)
        parts = self._pool_request("construct", send=False)
        self._setup([s for part in parts for s in part])

    def _setup(self, spaces: list) -> None:
        """Check the spaces of all envs and allocate the result buffers."""
        try:
            obs_space, act_space = spaces[0]
            for i, (o, a) in enumerate(spaces):
                if o != obs_space or a != act_space:
                    raise ValueError(
                        f"env {i} has spaces ({o}, {a}) but env 0 has ({obs_space}, "
                        f"{act_space}); all envs must share their spaces"
                    )
            for what, space in (("observation", obs_space), ("action", act_space)):
                if getattr(space, "shape", None) is None:
                    raise ValueError(f"the {what} space {space} has no fixed shape")
        except ValueError:
            self.close()
            raise
        self.single_observation_space, self.single_action_space = obs_space, act_space
        layout, nbytes = _layout(self.num_envs, obs_space, act_space)
        if self._pool is None:
            self._bufs.update(_views(bytearray(nbytes), layout))
            self._group.bufs = self._bufs
        else:
            shm = self._pool.create_shm(nbytes)
            self._bufs.update(_views(shm.buf, layout))
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
            info = _concat_infos(parts, "reset info")
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
                for conn in self._pool.conns:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
                        conn.send(("step", None))
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
            info = _concat_infos(self._pool_request("step", send=False), "step info")
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
