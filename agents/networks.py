"""Building blocks shared by SAC and TD3: MLPs, an Adam optimiser and Polyak averaging (the twin
critics built from them are in critics.py, the config checks in config.py).

Networks are plain `tf.Variable`s in a `tf.Module`, not Keras layers: the compiled train step
is then nothing but matmuls, bias adds and activations, and every variable has a stable name
that checkpoints use. (bench/update_bench.py measures the step against a bare one doing only
the matmuls.) Measured and rejected: one flat parameter vector per network (fewer optimiser
kernels, but the split and the gradient concat cost more) and XLA (its CPU matmul is
slower than oneDNN's here).

Threads: on a 2-core CPU the step ran fastest with `tf.config.threading`
intra_op_parallelism_threads=1 and inter_op_parallelism_threads=2 (each op on one core, the
critic and actor work side by side), about 0.9 of the bare step against about 0.75 with
TensorFlow's defaults. That is a process-wide setting, so the trainer or CLI makes it.

Adam is written here, on TensorFlow's fused `ResourceApplyAdam` kernel (one op per variable,
the kernel Keras 2 used), so its slots and step counter are plain named variables that
`get_state()` saves and restores bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import tensorflow as tf


class MLP(tf.Module):
    """Fully connected network: [Linear -> (Dropout) -> (LayerNorm) -> ReLU] * len(hidden) ->
    Linear.

    One variable per tensor, named in `params` (`l0/w`, `l0/b`, `l0/ln_gain`, ...; the
    checkpoint and an export use these names). Weights start Glorot-uniform, biases zero;
    the output layer's weights are multiplied by `out_scale`. `hidden=()` gives a single
    linear layer (handy for hand-computed tests). With `dropout` > 0 a call given a generator
    zeroes each hidden unit with that probability and scales the rest by 1 / (1 - dropout)
    (DroQ's order: before the LayerNorm); a call without one uses every unit.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        rng: tf.random.Generator,
        layer_norm: bool = False,
        dropout: float = 0.0,
        out_scale: float = 1.0,
        name: str = "mlp",
    ):
        super().__init__(name=name)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.layer_norm = bool(layer_norm)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        sizes = (self.in_dim, *self.hidden, self.out_dim)
        self.n_layers = len(sizes) - 1
        self.params: dict[str, tf.Variable] = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            scale = out_scale if i == self.n_layers - 1 else 1.0
            w_init = rng.uniform([fan_in, fan_out], -limit, limit) * scale
            self.params[f"l{i}/w"] = tf.Variable(w_init, name=f"l{i}_w")
            self.params[f"l{i}/b"] = tf.Variable(tf.zeros([fan_out]), name=f"l{i}_b")
            if self.layer_norm and i < self.n_layers - 1:
                self.params[f"l{i}/ln_gain"] = tf.Variable(tf.ones([fan_out]), name=f"l{i}_g")
                self.params[f"l{i}/ln_shift"] = tf.Variable(tf.zeros([fan_out]), name=f"l{i}_s")

    @property
    def weights(self) -> list[tf.Variable]:
        """All trainable variables, in the fixed order of `params`."""
        return list(self.params.values())

    def __call__(self, x: tf.Tensor, rng: tf.random.Generator | None = None) -> tf.Tensor:
        """The output for input rows `x`; dropout drawn from `rng` where the network has it."""
        p = self.params
        for i in range(self.n_layers):
            x = tf.matmul(x, p[f"l{i}/w"]) + p[f"l{i}/b"]
            if i == self.n_layers - 1:
                break
            if self.dropout > 0 and rng is not None:
                kept = tf.cast(rng.uniform(tf.shape(x)) >= self.dropout, x.dtype)
                x = x * kept / (1.0 - self.dropout)
            if self.layer_norm:
                mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
                x = (x - mean) * tf.math.rsqrt(var + 1e-5) * p[f"l{i}/ln_gain"]
                x = x + p[f"l{i}/ln_shift"]
            x = tf.nn.relu(x)
        return x

    def copy_from(self, other: MLP) -> None:
        for mine, theirs in zip(self.weights, other.weights, strict=True):
            mine.assign(theirs)


def polyak_update(target: Sequence[tf.Variable], source: Sequence[tf.Variable], tau) -> None:
    """target <- (1 - tau) * target + tau * source, one fused kernel per variable."""
    tau = tf.convert_to_tensor(tau, tf.float32)
    for t, s in zip(target, source, strict=True):
        # ApplyGradientDescent computes var -= alpha * delta; delta = target - source.
        tf.raw_ops.ResourceApplyGradientDescent(var=t.handle, alpha=tau, delta=t - s)


class Adam(tf.Module):
    """Adam (Kingma & Ba 2015) with TensorFlow's fused kernel and named state.

    State: first/second moment slots per variable and an int64 step counter, all listed in
    `state_variables()` under stable names so an agent checkpoint restores them exactly.
    """

    def __init__(
        self,
        variables: dict[str, tf.Variable],
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        name: str = "adam",
    ):
        super().__init__(name=name)
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.variables_by_name = dict(variables)
        self.step = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="step")
        self.m = {k: tf.Variable(tf.zeros_like(v), trainable=False) for k, v in variables.items()}
        self.v = {k: tf.Variable(tf.zeros_like(v), trainable=False) for k, v in variables.items()}

    def state_variables(self) -> dict[str, tf.Variable]:
        out: dict[str, tf.Variable] = {"step": self.step}
        for k in self.variables_by_name:
            out[f"m/{k}"] = self.m[k]
            out[f"v/{k}"] = self.v[k]
        return out

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        """One Adam step; `grads` are in the order of the `variables` dict given at build."""
        t = tf.cast(self.step + 1, tf.float32)
        b1_power = tf.pow(tf.constant(self.beta1, tf.float32), t)
        b2_power = tf.pow(tf.constant(self.beta2, tf.float32), t)
        lr = tf.constant(self.lr, tf.float32)
        b1 = tf.constant(self.beta1, tf.float32)
        b2 = tf.constant(self.beta2, tf.float32)
        eps = tf.constant(self.epsilon, tf.float32)
        items = zip(self.variables_by_name.items(), grads, strict=True)
        for (k, var), g in items:
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=self.m[k].handle, v=self.v[k].handle,
                beta1_power=b1_power, beta2_power=b2_power, lr=lr, beta1=b1, beta2=b2,
                epsilon=eps, grad=g, use_locking=False,
            )
        self.step.assign_add(1)


def named_variables(nets: Mapping[str, MLP]) -> dict[str, tf.Variable]:
    """{"<net>/<param>": variable} over several networks: the names checkpoints use."""
    return {f"{name}/{k}": v for name, net in nets.items() for k, v in net.params.items()}


def prefixed(prefix: str, variables: Mapping[str, tf.Variable]) -> dict[str, tf.Variable]:
    return {f"{prefix}/{k}": v for k, v in variables.items()}
