"""Export an agent's deterministic actor, observation normaliser baked in, as a SavedModel and
a TFLite model, and prove they agree before anyone can use them.

The TFLite model is converted from the SavedModel (`TFLiteConverter.from_saved_model`).
Known trap, measured with TF 2.21 / Keras 3: `from_concrete_functions` can silently produce
a model that outputs NaN. Whatever the route, `check_parity` runs the TFLite model through
the same interpreter the deploy runtime uses and compares it with the TensorFlow actor; any
difference above the tolerance, or any non-finite output, is an ExportError.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from gaitforge.control.bundle import SAVED_MODEL, TFLITE
from gaitforge.control.runner import make_interpreter

PARITY_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """The exported actor is not the trained one (parity), or conversion failed."""


class ExportedActor(tf.Module):
    """obs (batch, obs_dim) float32 -> {"action": (batch, act_dim)}, normaliser included."""

    def __init__(self, policy):
        """policy: an agent's `deterministic_actor()`."""
        super().__init__(name="actor")
        # Tracking the network and the normaliser saves their variables with the model.
        self.actor, self.obs_norm = policy.actor, policy.obs_norm
        self._action = policy.action  # traced into `serve` (one flat graph, no nested call)
        self.serve = tf.function(
            lambda obs: {"action": self._action(obs)},
            input_signature=[tf.TensorSpec([None, policy.obs_dim], tf.float32, name="obs")])


def write_models(agent, folder: Path) -> None:
    """folder/saved_model/ and folder/policy.tflite for the agent's deterministic actor."""
    module = ExportedActor(agent.deterministic_actor())
    saved = folder / SAVED_MODEL
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    model = converter.convert()
    (folder / TFLITE).write_bytes(model)


def actor_outputs_tf(agent, observations: np.ndarray) -> np.ndarray:
    return agent.deterministic_actor()(tf.constant(observations, tf.float32)).numpy()


def check_parity(agent, tflite_path: Path, observations: np.ndarray,
                 tolerance: float = PARITY_TOLERANCE) -> dict:
    """Run TFLite (the deploy interpreter, one observation per call, as on the robot) and the
    TF actor on the same observations; raise ExportError if they differ by more than
    `tolerance` or either is non-finite. Returns {"n", "max_abs_diff", "backend"}."""
    obs = np.asarray(observations, np.float32)
    expected = actor_outputs_tf(agent, obs)
    interp, backend = make_interpreter(tflite_path)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    interp.resize_tensor_input(inp["index"], [1, obs.shape[1]])
    interp.allocate_tensors()
    got = np.empty_like(expected)
    for i, row in enumerate(obs):
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        got[i] = interp.get_tensor(out["index"])[0]
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(expected))):
        bad = int(np.sum(~np.isfinite(got)))
        raise ExportError(f"{tflite_path}: {bad} non-finite TFLite outputs "
                          f"(TF actor finite: {bool(np.all(np.isfinite(expected)))})")
    diff = float(np.max(np.abs(got - expected)))
    if diff > tolerance:
        raise ExportError(f"{tflite_path}: TFLite and TF actors differ by {diff:.3g} "
                          f"(> {tolerance:g}) over {len(obs)} observations")
    return {"n": len(obs), "max_abs_diff": diff, "backend": backend}


def random_observations(agent, n: int, seed: int = 0) -> np.ndarray:
    """n observations around the normaliser's statistics (2 sigma wide, so clipping is hit)."""
    rng = np.random.default_rng(seed)
    policy = agent.deterministic_actor()
    norm, obs_dim = policy.obs_norm, policy.obs_dim
    std = np.sqrt(norm.var_np) if norm.enabled else np.ones(obs_dim)
    mean = norm.mean_np if norm.enabled else np.zeros(obs_dim)
    return (mean + 2.0 * std * rng.standard_normal((n, obs_dim))).astype(np.float32)


def export_actor(agent, folder: str | os.PathLike, observations: np.ndarray) -> dict:
    """Write both models into `folder` and check parity on `observations`; the parity report."""
    folder = Path(folder)
    write_models(agent, folder)
    return check_parity(agent, folder / TFLITE, observations)


def normalizer_record(agent) -> dict:
    """The normaliser statistics for bundle.json (already baked into the models)."""
    norm = agent.deterministic_actor().obs_norm
    return {"enabled": bool(norm.enabled), "clip": norm.clip, "count": norm.count,
            "mean": norm.mean.numpy().tolist(), "inv_std": norm.inv_std.numpy().tolist()}
