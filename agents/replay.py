"""Replay buffer: NumPy ring buffers in named partitions, uniform sampling, atomic save/load.

Fields of a transition (all float32; one row per transition):
    obs              (obs_dim,)          what the actor sees (hardware-measurable)
    action           (act_dim,)          in [-1, 1]
    reward           ()
    next_obs         (obs_dim,)          the true next observation (`info["final_obs"]` at an
                                         episode end, not the auto-reset one)
    terminated       ()                  1.0 = true terminal (no bootstrap). A time-limit
                                         truncation is NOT terminal: store 0.0.
    critic_obs       (critic_obs_dim,)   privileged sim state for an asymmetric critic;
    next_critic_obs  (critic_obs_dim,)   present only when critic_obs_dim > 0

Partitions (e.g. "sim" and "real") are separate rings with their own capacity. `sample` draws
uniformly over everything stored, or in a fixed ratio between partitions, e.g.
`ratio={"sim": 0.75, "real": 0.25}` takes 75 % of each batch from "sim".
Randomness comes only from the `np.random.Generator` passed in, so sampling is reproducible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from .checkpoint import CheckpointError, load_arrays, save_arrays

FORMAT = "gaitforge.replay/1"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def batch_shapes(obs_dim: int, act_dim: int, critic_obs_dim: int = 0) -> dict[str, tuple]:
    """Per-row shape of each field (the agents build their compiled input signature from it)."""
    shapes = {"obs": (obs_dim,), "action": (act_dim,), "reward": (), "next_obs": (obs_dim,),
              "terminated": ()}
    if critic_obs_dim > 0:
        shapes["critic_obs"] = (critic_obs_dim,)
        shapes["next_critic_obs"] = (critic_obs_dim,)
    return shapes


def check_batch(batch: Mapping[str, np.ndarray], shapes: Mapping[str, tuple], batch_size: int,
                num_batches: int | None = None) -> dict[str, np.ndarray]:
    """The fields of `shapes` from `batch` as float32, after checking each shape.

    Extra fields are dropped (a symmetric agent ignores critic_obs). With `num_batches`
    (any positive value, or -1 for "any"), a leading stacking axis is expected.
    """
    out = {}
    for field, shape in shapes.items():
        if field not in batch:
            raise ValueError(f"batch lacks field '{field}' (needs: {', '.join(shapes)})")
        value = np.asarray(batch[field], np.float32)
        if num_batches == -1:  # "any": the first field decides, the others must agree
            num_batches = value.shape[0] if value.ndim else 0
        lead = () if num_batches is None else (num_batches,)
        if value.shape != (*lead, batch_size, *shape):
            raise ValueError(f"batch field '{field}' has shape {value.shape}, "
                             f"expected {(*lead, batch_size, *shape)}")
        out[field] = value
    return out


class _Ring:
    """One partition: preallocated arrays, a write pointer and a fill count."""

    def __init__(self, capacity: int, shapes: dict[str, tuple]):
        self.capacity = capacity
        self.data = {k: np.zeros((capacity, *s), np.float32) for k, s in shapes.items()}
        self.ptr = 0
        self.size = 0

    def add(self, rows: dict[str, np.ndarray], n: int) -> None:
        if n > self.capacity:  # only the newest `capacity` rows survive
            rows = {k: v[n - self.capacity:] for k, v in rows.items()}
            n = self.capacity
        idx = (self.ptr + np.arange(n)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = v
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)


class ReplayBuffer:
    """Ring-buffer replay in named partitions.

    `capacity` is an int (one partition named "main") or a mapping partition -> capacity.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int | Mapping[str, int],
                 critic_obs_dim: int = 0):
        for name, value, low in (("obs_dim", obs_dim, 1), ("act_dim", act_dim, 1),
                                 ("critic_obs_dim", critic_obs_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"replay: {name} must be an integer >= {low}, got {value!r}")
        capacities = {"main": capacity} if not isinstance(capacity, Mapping) else dict(capacity)
        if not capacities:
            raise ValueError("replay: at least one partition is needed")
        for name, cap in capacities.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"replay: partition name {name!r} must match [A-Za-z0-9_-]+")
            if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 1:
                raise ValueError(f"replay: capacity of partition '{name}' must be an integer "
                                 f">= 1, got {cap!r}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.critic_obs_dim = int(critic_obs_dim)
        self.shapes = batch_shapes(self.obs_dim, self.act_dim, self.critic_obs_dim)
        self._parts = {name: _Ring(int(cap), self.shapes) for name, cap in capacities.items()}

    @property
    def partitions(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def size(self, partition: str | None = None) -> int:
        """Rows stored in one partition, or in all of them."""
        if partition is None:
            return sum(p.size for p in self._parts.values())
        return self._part(partition).size

    def capacity(self, partition: str | None = None) -> int:
        if partition is None:
            return sum(p.capacity for p in self._parts.values())
        return self._part(partition).capacity

    def __len__(self) -> int:
        return self.size()

    def _part(self, name: str) -> _Ring:
        if name not in self._parts:
            raise ValueError(f"replay: unknown partition '{name}' "
                             f"(known: {', '.join(self._parts)})")
        return self._parts[name]

    # --- writing ---
    def add(self, obs, action, reward, next_obs, terminated, critic_obs=None,
            next_critic_obs=None, *, partition: str = "main") -> None:
        """Append a batch of N transitions (leading dimension N on every field)."""
        ring = self._part(partition)
        given = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs,
                 "terminated": terminated}
        if self.critic_obs_dim > 0:
            if critic_obs is None or next_critic_obs is None:
                raise ValueError("replay: critic_obs and next_critic_obs are required "
                                 f"(critic_obs_dim={self.critic_obs_dim})")
            given["critic_obs"], given["next_critic_obs"] = critic_obs, next_critic_obs
        elif critic_obs is not None or next_critic_obs is not None:
            raise ValueError("replay: critic_obs given but this buffer has critic_obs_dim=0")
        rows = {k: np.asarray(v, np.float32) for k, v in given.items()}
        n = rows["obs"].shape[0] if rows["obs"].ndim else -1
        for k, v in rows.items():
            if v.shape != (n, *self.shapes[k]):
                raise ValueError(f"replay: field '{k}' has shape {v.shape}, "
                                 f"expected {(max(n, 0), *self.shapes[k])}")
        ring.add(rows, n)

    # --- sampling ---
    def sample(self, batch_size: int, rng: np.random.Generator,
               ratio: Mapping[str, float] | None = None,
               num_batches: int | None = None) -> dict[str, np.ndarray]:
        """Uniform sample of `batch_size` rows (with replacement).

        ratio: partition -> fraction of each batch (fractions sum to 1; partitions left out
            get none). Counts are rounded by largest remainder and the rows of each partition
            come in one block, in the order of the partitions. None: uniform over all rows.
        num_batches: if given, return `num_batches` independent batches stacked on a leading
            axis (shape (num_batches, batch_size, ...)), for several updates in one call.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"replay: batch_size must be a positive integer, got {batch_size!r}")
        k = 1 if num_batches is None else int(num_batches)
        counts = self._counts(batch_size, ratio)
        out = {f: np.empty((k, batch_size, *s), np.float32) for f, s in self.shapes.items()}
        for b in range(k):
            start = 0
            for name, count in counts.items():
                if count == 0:
                    continue
                ring = self._parts[name]
                idx = rng.integers(0, ring.size, size=count)
                for f in self.shapes:
                    out[f][b, start:start + count] = ring.data[f][idx]
                start += count
        if num_batches is None:
            return {f: v[0] for f, v in out.items()}
        return out

    def _counts(self, batch_size: int, ratio: Mapping[str, float] | None) -> dict[str, int]:
        if ratio is None:
            total = self.size()
            if total == 0:
                raise ValueError("replay: cannot sample from an empty buffer")
            if len(self._parts) == 1:
                return {next(iter(self._parts)): batch_size}
            ratio = {name: p.size / total for name, p in self._parts.items()}
        for name, frac in ratio.items():
            self._part(name)
            if isinstance(frac, bool) or not isinstance(frac, int | float) or not frac >= 0:
                raise ValueError(f"replay: ratio of '{name}' must be a number >= 0, got {frac!r}")
        if abs(sum(ratio.values()) - 1.0) > 1e-6:
            raise ValueError(f"replay: ratio fractions must sum to 1, got {dict(ratio)}")
        exact = {name: ratio.get(name, 0.0) * batch_size for name in self._parts}
        counts = {name: int(np.floor(x)) for name, x in exact.items()}
        by_remainder = sorted(self._parts, key=lambda n: counts[n] - exact[n])
        for name in by_remainder[: batch_size - sum(counts.values())]:
            counts[name] += 1
        for name, count in counts.items():
            if count > 0 and self._parts[name].size == 0:
                raise ValueError(f"replay: partition '{name}' is empty but the ratio asks "
                                 f"for {count} of {batch_size} rows")
        return counts

    # --- persistence ---
    def get_state(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays; only the filled rows of each ring are kept."""
        state = {"format": np.array(FORMAT), "obs_dim": np.array(self.obs_dim),
                 "act_dim": np.array(self.act_dim),
                 "critic_obs_dim": np.array(self.critic_obs_dim),
                 "partitions": np.array(list(self._parts))}
        for name, ring in self._parts.items():
            state[f"{name}/capacity"] = np.array(ring.capacity)
            state[f"{name}/ptr"] = np.array(ring.ptr)
            state[f"{name}/size"] = np.array(ring.size)
            for f in self.shapes:
                state[f"{name}/{f}"] = ring.data[f][: ring.size]
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], source: str = "state") -> ReplayBuffer:
        def get(key: str) -> np.ndarray:
            if key not in state:
                raise CheckpointError(f"{source}: replay field '{key}' is missing")
            return np.asarray(state[key])

        def get_int(key: str) -> int:
            value = get(key)
            if value.shape != () or value.dtype.kind not in "iu":
                raise CheckpointError(f"{source}: replay field '{key}' must be an integer")
            return int(value)

        if str(get("format")) != FORMAT:
            raise CheckpointError(f"{source}: not a replay file (format {str(get('format'))!r}, "
                                  f"expected {FORMAT!r})")
        names = [str(n) for n in get("partitions").reshape(-1)]
        try:
            buf = cls(get_int("obs_dim"), get_int("act_dim"),
                      {n: get_int(f"{n}/capacity") for n in names}, get_int("critic_obs_dim"))
        except ValueError as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{source}: {err}") from err
        for name in names:
            ring = buf._parts[name]
            ptr, size = get_int(f"{name}/ptr"), get_int(f"{name}/size")
            if not (0 <= size <= ring.capacity and 0 <= ptr < ring.capacity
                    and (size == ring.capacity or ptr == size)):
                raise CheckpointError(f"{source}: partition '{name}' has inconsistent "
                                      f"ptr={ptr}, size={size}, capacity={ring.capacity}")
            for f, shape in buf.shapes.items():
                value = get(f"{name}/{f}")
                if value.shape != (size, *shape):
                    raise CheckpointError(f"{source}: replay field '{name}/{f}' has shape "
                                          f"{value.shape}, expected {(size, *shape)}")
                ring.data[f][:size] = value
            ring.ptr, ring.size = ptr, size
        return buf

    def save(self, path: str | os.PathLike) -> None:
        """Atomic write of the whole buffer to one .npz file."""
        save_arrays(path, self.get_state())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        return cls.from_state(load_arrays(path), source=str(path))
