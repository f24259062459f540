"""The machinery under ``sim.vec_env.VecEnv`` (whose docstring is the contract).

    EnvGroup      a slice of envs stepped in a loop, reading actions from and writing results
                  into arrays: used as is in-process (workers=0) and inside every worker, so
                  both modes run the same code and give bitwise identical results
    stack_infos   per-env info dicts -> one dict of arrays (concat_infos joins the workers')
    WorkerPool    the subprocess mode: worker processes (``_worker_main``), a pipe per worker
                  for commands and the small stacked infos, and one shared-memory block
                  (``buffer_layout`` / ``buffer_views``) for observations, actions, rewards
                  and flags; shutdown is idempotent and never hangs on a dead worker
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
from collections.abc import Callable, Mapping, Sequence
from multiprocessing import connection, shared_memory
from typing import Any

import cloudpickle
import gymnasium
import numpy as np

_ALIGN = 64  # bytes; every shared array starts on a cache-line boundary
_JOIN_TIMEOUT_S = 5.0
_UNMAPPABLE: list = []  # unlinked blocks whose mapping a stray view still holds


class VecEnvWorkerError(RuntimeError):
    """An env in a subprocess worker raised, or the worker died."""


# --------------------------------------------------------------------------- buffers


def buffer_layout(n: int, obs_space: gymnasium.Space, act_space: gymnasium.Space):
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


def buffer_views(buf, layout) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(shape, dtype=np.dtype(dt), buffer=buf, offset=off)
        for name, (off, shape, dt) in layout.items()
    }


# ------------------------------------------------------------------------ info stacking


def stack_infos(infos: Sequence[Mapping], where: str = "info") -> dict:
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
            out[k] = stack_infos(values, f"{where}[{k!r}]")
        elif isinstance(values[0], float | int | bool | np.number | np.bool_):
            out[k] = np.array(values)  # scalars (reward terms): one call, not one per env
        else:
            try:
                out[k] = np.stack([np.asarray(v) for v in values])
            except ValueError as e:
                raise ValueError(f"{where}[{k!r}]: cannot stack values: {e}") from None
    return out


def concat_infos(parts: Sequence[Mapping], where: str = "info") -> dict:
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
        k: concat_infos([d[k] for d in parts], f"{where}[{k!r}]")
        if isinstance(parts[0][k], Mapping)
        else np.concatenate([d[k] for d in parts])
        for k in keys
    }


# -------------------------------------------------------------------- per-env stepping


def critic_observation_space(env) -> gymnasium.Space | None:
    """The env's ``critic_observation_space`` (its privileged ``info["critic_obs"]``), looked
    up through wrappers; None where the env declares none."""
    get = getattr(env, "get_wrapper_attr", None)
    try:
        return get("critic_observation_space") if get is not None else (
            getattr(env, "critic_observation_space", None))
    except AttributeError:
        return None


class EnvGroup:
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

    def spaces(self) -> list[tuple[gymnasium.Space, gymnasium.Space, gymnasium.Space | None]]:
        """(observation, action, critic observation or None) space of every env."""
        return [(env.observation_space, env.action_space, critic_observation_space(env))
                for env in self.envs]

    def reset(self, seeds: Sequence[int | None], options) -> dict:
        obs_buf, infos = self.bufs["obs"], []
        for j, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs, info = env.reset(seed=seed, options=options)
            obs_buf[j] = obs
            infos.append(info)
        return stack_infos(infos, "reset info")

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
        return stack_infos(infos, "step info")

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
        group = EnvGroup(cloudpickle.loads(fns_bytes), obs_info_keys)
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
                group.bufs = {k: v[lo:hi] for k, v in buffer_views(shm.buf, layout).items()}
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


class WorkerPool:
    """Processes, pipes and shared memory of the subprocess mode; shutdown is idempotent."""

    def __init__(self, env_fns: Sequence[Callable[[], Any]], workers: int, obs_info_keys,
                 views: dict, start_method: str):
        """Start `workers` processes; worker w builds a contiguous slice of `env_fns` (sizes
        differ by at most one; worker 0 gets the larger slices). The replies of construction
        are gathered with `gather("construct")`."""
        sizes = [len(env_fns) // workers] * workers
        for w in range(len(env_fns) % workers):
            sizes[w] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.slices = list(zip(bounds[:-1], bounds[1:], strict=True))
        fns_bytes = [cloudpickle.dumps(env_fns[lo:hi]) for lo, hi in self.slices]
        ctx = mp.get_context(start_method)
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

    def send(self, cmd: str, args: Sequence | None = None) -> None:
        """Send cmd to all workers (args[w] to worker w); `gather` collects the replies."""
        for w, conn in enumerate(self.conns):
            # A dead worker's pipe raises here; gather reports it with its exit code.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
                conn.send((cmd, None if args is None else args[w]))

    def request(self, cmd: str, args: Sequence | None = None) -> list:
        """Send cmd to all workers (args[w] to worker w), then gather all replies."""
        self.send(cmd, args)
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
