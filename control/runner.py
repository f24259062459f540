"""PolicyRunner: a verified bundle's actor behind one call, `act(observation) -> action`;
ExploringRunner: the same with Gaussian exploration noise on every action.

It runs `policy.tflite` with the LiteRT interpreter (`ai-edge-litert`), or TensorFlow's
`tf.lite.Interpreter` where LiteRT is not installed. Never TensorFlow in the control loop:
bench/deploy_bench.py measured 0.65 ms per eager call and 0.23 ms per compiled call here,
against 5-8 µs for LiteRT.
The interpreter is built once with batch 1, and input and output buffers are reused, so a
call allocates nothing but the returned copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gaitforge.robots.spec import RobotSpec

from .bundle import BundleError, PolicyBundle, load_bundle

BACKENDS = ("auto", "litert", "tflite")
MAX_EXPLORE = 0.5  # an exploring deploy's largest noise, in action units ([-1, 1])


def make_interpreter(model_path: Path, backend: str = "auto"):
    """A TFLite interpreter for `model_path` from LiteRT or, failing that, TensorFlow."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown '{backend}' (known: {', '.join(BACKENDS)})")
    if backend in ("auto", "litert"):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            if backend == "litert":
                raise
        else:
            return Interpreter(model_path=str(model_path), num_threads=1), "litert"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf.lite.Interpreter(model_path=str(model_path), num_threads=1), "tflite"


class PolicyRunner:
    def __init__(self, bundle: PolicyBundle | str | os.PathLike, *, backend: str = "auto"):
        self.bundle = bundle if isinstance(bundle, PolicyBundle) else load_bundle(bundle)
        self.interpreter, self.backend = make_interpreter(self.bundle.tflite_path, backend)
        interp = self.interpreter
        (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
        self.obs_dim = self.bundle.obs_dim
        self.act_dim = len(self.bundle.action_layout["joint_order"])
        if inp["shape_signature"][-1] != self.obs_dim:
            raise BundleError(f"{self.bundle.tflite_path}: input has "
                              f"{inp['shape_signature'][-1]} values, bundle.json says "
                              f"{self.obs_dim}")
        interp.resize_tensor_input(inp["index"], [1, self.obs_dim])
        interp.allocate_tensors()
        self._in, self._out = inp["index"], out["index"]
        out_size = interp.get_output_details()[0]["shape"][-1]
        if out_size != self.act_dim:
            raise BundleError(f"{self.bundle.tflite_path}: output has {out_size} values, the "
                              f"joint order has {self.act_dim}")
        self._buf = np.zeros((1, self.obs_dim), np.float32)

    def check_body(self, spec: RobotSpec, control_dt_s: float, observation_layout: list,
                   action_layout: dict) -> None:
        """Refuse (BundleError) a body whose robot, joints, period or policy I/O differ."""
        self.bundle.check_compatible(spec, control_dt_s, observation_layout, action_layout)

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The deterministic action in [-1, 1] for one observation of shape (obs_dim,)."""
        self._buf[0] = observation
        self.interpreter.set_tensor(self._in, self._buf)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)[0].copy()


class ExploringRunner:
    """A PolicyRunner whose every action carries Gaussian exploration noise, standard
    deviation `sigma` per joint, clipped to [-1, 1]: what `gaitforge deploy --explore SIGMA`
    runs to log episodes for fine-tuning. A deployed policy is deterministic, so its logs show
    a critic one action per state (README, "Why the logs do not help yet": what explored
    logs did, with and without the accelerometer window). The logged action is the noisy one,
    the one the robot was sent. `seed`: the noise's (default: fresh entropy); `seed` and `sigma`
    are in `metadata` for the log."""

    def __init__(self, runner: PolicyRunner, sigma: float, seed: int | None = None):
        if not 0.0 < sigma <= MAX_EXPLORE:
            raise ValueError(f"explore sigma must be in (0, {MAX_EXPLORE}], got {sigma}")
        self.runner, self.sigma = runner, float(sigma)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.metadata = {"explore": {"sigma": self.sigma, "seed": self.seed}}

    def __getattr__(self, name):  # everything else is the runner's (bundle, check_body, ...)
        return getattr(self.runner, name)

    def act(self, observation: np.ndarray) -> np.ndarray:
        action = self.runner.act(observation)
        noisy = action + self.sigma * self.rng.standard_normal(action.shape)
        return np.clip(noisy, -1.0, 1.0).astype(action.dtype)
