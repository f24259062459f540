"""Atomic save and checked load of a flat dict of NumPy arrays (.npz), and the glue between
named `tf.Variable`s and such dicts.

A file is written to a temporary name in the target folder, flushed, fsync'ed and then
renamed over the target with `os.replace`, so a process killed mid-write (even `kill -9`)
leaves either the old file or the new one, never a file that looks valid but is not.
Pickle is never used: object arrays are refused on save and on load.
This module does not import TensorFlow (the replay buffer uses it from NumPy-only code).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gaitforge.control.files import fsync_dir


class CheckpointError(ValueError):
    """A checkpoint file or state dict is unreadable or does not fit. The message says which."""


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to `path` (uncompressed .npz) atomically."""
    path = Path(path)
    clean = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise CheckpointError(f"{path}: '{key}' is an object array; only plain arrays")
        clean[key] = arr
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **clean)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an .npz written by `save_arrays`; errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    out: dict[str, np.ndarray] = {}
    key = None
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                out[key] = data[key]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        where = f" (reading '{key}')" if key is not None else ""
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint{where}: {err}") from err
    return out


def variables_state(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy each named variable out as a NumPy array."""
    return {name: var.numpy() for name, var in variables.items()}


def assign_state(variables: Mapping[str, Any], state: Mapping[str, np.ndarray],
                 *, prefix: str = "", source: str = "state") -> None:
    """Assign `state[prefix + name]` to each variable, after checking every key and shape.

    Nothing is assigned unless everything fits, so a failed load leaves the agent as it was.
    """
    for name, var in variables.items():
        key = prefix + name
        if key not in state:
            raise CheckpointError(f"{source}: missing '{key}'")
        value = np.asarray(state[key])
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(f"{source}: '{key}' has shape {tuple(value.shape)}, "
                                  f"expected {tuple(var.shape)} (different network sizes?)")
        if not np.can_cast(value.dtype, var.dtype.as_numpy_dtype, casting="same_kind"):
            raise CheckpointError(f"{source}: '{key}' has dtype {value.dtype}, "
                                  f"expected {var.dtype.name}")
    for name, var in variables.items():
        var.assign(np.asarray(state[prefix + name]).astype(var.dtype.as_numpy_dtype))


# --- agent state: variables + normalisers + a little metadata, as one flat dict ---

def agent_state(algo: str, config: Any, dims: tuple[int, ...], variables: Mapping[str, Any],
                normalizers: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Everything an agent needs to resume: `meta/*`, each variable, `<normaliser>/*`."""
    import dataclasses
    import json

    state = {"meta/algo": np.array(algo), "meta/dims": np.array(dims, np.int64),
             "meta/config": np.array(json.dumps(dataclasses.asdict(config), sort_keys=True))}
    state.update(variables_state(variables))
    for prefix, norm in normalizers.items():
        state.update({f"{prefix}/{k}": v for k, v in norm.get_state().items()})
    return state


def restore_agent_state(state: Mapping[str, np.ndarray], algo: str, dims: tuple[int, ...],
                        variables: Mapping[str, Any], normalizers: Mapping[str, Any],
                        source: str = "state") -> None:
    """Inverse of `agent_state`; checks algorithm, dims, every key and shape before assigning."""
    if "meta/algo" not in state or str(state["meta/algo"]) != algo:
        found = str(state["meta/algo"]) if "meta/algo" in state else "nothing"
        raise CheckpointError(f"{source}: holds state of '{found}', not '{algo}'")
    saved_dims = tuple(int(d) for d in np.asarray(state.get("meta/dims", [])).reshape(-1))
    if saved_dims != tuple(dims):
        raise CheckpointError(f"{source}: saved (obs_dim, act_dim, critic_obs_dim) = "
                              f"{saved_dims}, this agent has {tuple(dims)}")
    for prefix, norm in normalizers.items():
        for key, value in norm.get_state().items():
            full = f"{prefix}/{key}"
            if full not in state:
                raise CheckpointError(f"{source}: missing '{full}'")
            if np.shape(state[full]) != np.shape(value):
                raise CheckpointError(f"{source}: '{full}' has shape {np.shape(state[full])}, "
                                      f"expected {np.shape(value)}")
    assign_state(variables, state, source=source)
    for prefix, norm in normalizers.items():
        norm.set_state({k[len(prefix) + 1:]: v for k, v in state.items()
                        if k.startswith(prefix + "/")})
