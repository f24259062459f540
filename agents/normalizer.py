"""Observation normaliser: running mean and variance, updated from batches.

    y = clip((x - mean) / sqrt(var + eps), -clip, clip)

Statistics are kept in float64 on the NumPy side and merged batch by batch with the parallel
algorithm of Chan, Golub and LeVeque (1979), so the result equals `np.mean` / `np.var` over all
batches concatenated. After each update they are copied into two float32 `tf.Variable`s
(`mean` and `inv_std`) that `normalize_tf` reads, so the same normaliser runs inside the
compiled actor, and an export can bake those two vectors into the exported network.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class RunningNormalizer(tf.Module):
    def __init__(
        self, dim: int, *, clip: float = 10.0, eps: float = 1e-4, enabled: bool = True,
        name: str = "obs_norm",
    ):
        super().__init__(name=name)
        if dim < 0:
            raise ValueError(f"{name}: dim must be >= 0, got {dim}")
        if not clip > 0:
            raise ValueError(f"{name}: clip must be > 0, got {clip}")
        self.dim, self.clip, self.eps, self.enabled = int(dim), float(clip), float(eps), enabled
        self.count = 0.0
        self.mean_np = np.zeros(self.dim, np.float64)
        self.m2_np = np.zeros(self.dim, np.float64)  # sum of squared deviations from the mean
        self.mean = tf.Variable(tf.zeros([self.dim]), trainable=False, name="mean")
        self.inv_std = tf.Variable(tf.ones([self.dim]), trainable=False, name="inv_std")

    @property
    def var_np(self) -> np.ndarray:
        """Population variance (ddof=0); ones before any data."""
        if self.count == 0:
            return np.ones(self.dim, np.float64)
        return self.m2_np / self.count

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of shape (N, dim) into the running statistics."""
        if not self.enabled:
            return
        x = np.asarray(batch, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{self.name}: expected a batch of shape (N, {self.dim}), "
                             f"got {x.shape}")
        n_b = x.shape[0]
        if n_b == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name}: batch holds NaN or inf")
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean_np
        self.mean_np = self.mean_np + delta * (n_b / n)
        self.m2_np = self.m2_np + m2_b + delta**2 * (n_a * n_b / n)
        self.count = n
        self._sync()

    def _sync(self) -> None:
        if not self.enabled:
            return
        self.mean.assign(self.mean_np.astype(np.float32))
        self.inv_std.assign((1.0 / np.sqrt(self.var_np + self.eps)).astype(np.float32))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """NumPy side, float32, same numbers as `normalize_tf`."""
        x = np.asarray(x, np.float32)
        if not self.enabled:
            return x
        y = (x - self.mean.numpy()) * self.inv_std.numpy()
        return np.clip(y, -self.clip, self.clip)

    def normalize_tf(self, x: tf.Tensor) -> tf.Tensor:
        """TF side: usable inside a tf.function (reads the variables at call time)."""
        if not self.enabled:
            return x
        return tf.clip_by_value((x - self.mean) * self.inv_std, -self.clip, self.clip)

    # --- checkpoint ---
    def get_state(self) -> dict[str, np.ndarray]:
        return {"count": np.array(self.count, np.float64), "mean": self.mean_np.copy(),
                "m2": self.m2_np.copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        for key, shape in (("count", ()), ("mean", (self.dim,)), ("m2", (self.dim,))):
            if key not in state:
                raise ValueError(f"{self.name}: state lacks '{key}'")
            if np.shape(state[key]) != shape:
                raise ValueError(f"{self.name}: state '{key}' has shape {np.shape(state[key])}, "
                                 f"expected {shape}")
        self.count = float(state["count"])
        self.mean_np = np.array(state["mean"], np.float64)
        self.m2_np = np.array(state["m2"], np.float64)
        self._sync()
