"""What SAC and TD3 share: the public agent API around their compiled functions.

An algorithm sets `algo`, `config`, `obs_dim`, `act_dim`, `critic_obs_dim`, `obs_norm` and
`critic_obs_norm`, implements `_train_step`, `_train_steps`, `_act_mean`, `_variables()` and
an exploring actor, and calls `_compile(exploring_actor)` at the end of its constructor; this
class turns that into act / observe / update / update_stacked / get_state / set_state /
save / load.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from .checkpoint import agent_state, load_arrays, restore_agent_state, save_arrays
from .networks import MLP, Adam
from .normalizer import RunningNormalizer
from .replay import batch_shapes, check_batch


class OffPolicyAgent:
    algo = ""

    def _init_common(self, c, obs_dim: int, act_dim: int, critic_obs_dim: int, seed: int,
                     build_actor) -> None:
        """Dims, RNG streams, normalisers, the actor (`build_actor(init_rng)`, called before the
        critics draw from the same RNG), twin critics with targets and their optimiser."""
        if c.asymmetric_critic and critic_obs_dim <= 0:
            raise ValueError("asymmetric_critic needs critic_obs_dim > 0 (privileged state)")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.critic_obs_dim = int(critic_obs_dim) if c.asymmetric_critic else 0
        init_rng, self._rng, self._act_rng = tf.random.Generator.from_seed(seed).split(3)
        self.obs_norm = RunningNormalizer(obs_dim, clip=c.obs_clip, enabled=c.normalize_obs)
        self.critic_obs_norm = RunningNormalizer(
            self.critic_obs_dim, clip=c.obs_clip, enabled=c.normalize_obs, name="critic_obs_norm")
        build_actor(init_rng)
        q_in = obs_dim + self.critic_obs_dim + act_dim
        self.critics = [MLP(q_in, c.critic_hidden, 1, rng=init_rng, name=f"critic{i}",
                            layer_norm=c.critic_layer_norm) for i in (1, 2)]
        self.target_critics = [MLP(q_in, c.critic_hidden, 1, rng=init_rng, name=f"target{i}",
                                   layer_norm=c.critic_layer_norm) for i in (1, 2)]
        for target, critic in zip(self.target_critics, self.critics, strict=True):
            target.copy_from(critic)
        critics = {"critic1": self.critics[0], "critic2": self.critics[1]}
        self.critic_opt = Adam(named_variables(critics), c.critic_lr)

    def _compile(self, act_random) -> None:
        """tf.functions with fixed input signatures, so each traces exactly once."""
        self.batch_shapes = batch_shapes(self.obs_dim, self.act_dim, self.critic_obs_dim)
        spec = {k: tf.TensorSpec((self.config.batch_size, *s), tf.float32)
                for k, s in self.batch_shapes.items()}
        stacked = {k: tf.TensorSpec((None, *s.shape), tf.float32) for k, s in spec.items()}
        obs_spec = [tf.TensorSpec([None, self.obs_dim], tf.float32)]
        self._fns = {"update": tf.function(self._train_step, input_signature=[spec]),
                     "update_stacked": tf.function(self._train_steps, input_signature=[stacked]),
                     "act_mean": tf.function(self._act_mean, input_signature=obs_spec),
                     "act_random": tf.function(act_random, input_signature=obs_spec)}

    def _inputs(self, batch):
        """Normalise; the critic state input is obs, or obs ++ critic_obs when asymmetric."""
        obs = self.obs_norm.normalize_tf(batch["obs"])
        next_obs = self.obs_norm.normalize_tf(batch["next_obs"])
        q_obs, next_q_obs = obs, next_obs
        if self.critic_obs_dim:
            q_obs = tf.concat([obs, self.critic_obs_norm.normalize_tf(batch["critic_obs"])], -1)
            next_q_obs = tf.concat(
                [next_obs, self.critic_obs_norm.normalize_tf(batch["next_critic_obs"])], -1)
        return {"obs": obs, "next_obs": next_obs, "q_obs": q_obs, "next_q_obs": next_q_obs,
                "action": batch["action"], "reward": batch["reward"],
                "terminated": batch["terminated"]}

    def _call(self, name: str, arg):
        """Run compiled function `name`. Its concrete function (traced once, on first use) is
        called directly: measured here, that saves ~0.4 ms per update over dispatching
        through the tf.function, and inputs are made tensors first (also cheaper)."""
        concrete = self.__dict__.setdefault("_concrete", {})  # per instance
        fn = concrete.get(name)
        if fn is None:
            fn = concrete[name] = self._fns[name].get_concrete_function()
        if isinstance(arg, dict):
            return fn({k: tf.constant(v) for k, v in arg.items()})
        return fn(tf.constant(arg))

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1] for a batch of observations [N, obs_dim]: one compiled call."""
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"act: obs must have shape (N, {self.obs_dim}), got {obs.shape}")
        return self._call("act_mean" if deterministic else "act_random", obs).numpy()

    def observe(self, obs: np.ndarray, critic_obs: np.ndarray | None = None) -> None:
        """Update the observation normaliser(s) with a batch of fresh observations."""
        self.obs_norm.update(obs)
        if self.critic_obs_dim and critic_obs is not None:
            self.critic_obs_norm.update(critic_obs)

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        """One gradient update on a batch from ReplayBuffer.sample; returns the metrics."""
        b = check_batch(batch, self.batch_shapes, self.config.batch_size)
        return {k: float(v) for k, v in self._call("update", b).items()}

    def update_stacked(self, batches: Mapping[str, np.ndarray]) -> dict[str, float]:
        """K updates in one compiled call on K stacked batches (ReplayBuffer.sample with
        num_batches=K); the metrics are those of the last update."""
        b = check_batch(batches, self.batch_shapes, self.config.batch_size, num_batches=-1)
        return {k: float(v) for k, v in self._call("update_stacked", b).items()}

    def _variables(self) -> dict[str, tf.Variable]:
        raise NotImplementedError

    def _dims(self) -> tuple[int, int, int]:
        return (self.obs_dim, self.act_dim, self.critic_obs_dim)

    def _normalizers(self) -> dict:
        return {"obs_norm": self.obs_norm, "critic_obs_norm": self.critic_obs_norm}

    def get_state(self) -> dict[str, np.ndarray]:
        """Networks, targets, optimiser slots, counters, RNG states, normalisers."""
        return agent_state(self.algo, self.config, self._dims(), self._variables(),
                           self._normalizers())

    def set_state(self, state: Mapping[str, np.ndarray], source: str = "state") -> None:
        restore_agent_state(state, self.algo, self._dims(), self._variables(),
                            self._normalizers(), source=source)

    def save(self, path) -> None:
        save_arrays(path, self.get_state())

    def load(self, path) -> None:
        self.set_state(load_arrays(path), source=str(path))


def named_variables(nets: Mapping[str, MLP]) -> dict[str, tf.Variable]:
    return {f"{name}/{k}": v for name, net in nets.items() for k, v in net.params.items()}
