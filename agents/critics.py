"""Twin critics with clipped double Q (Fujimoto et al. 2018), as SAC and TD3 both use them.

Two Q networks Q1(s, a) and Q2(s, a), a Polyak-averaged target copy of each, and one Adam
over both online critics. The algorithms bootstrap from the smaller of the two target values
(`min_q(..., target=True)`) and regress both critics on one TD target (`td_loss`). How that
target is formed differs (soft in SAC, plain in TD3), so the formulas stay in sac.py / td3.py.

The state input s is the critic's view: the (normalised) observation, or observation ++
privileged state with an asymmetric critic. Checkpoint names: `critic1/*`, `critic2/*`,
`target1/*`, `target2/*` and the optimiser's `opt_critic/*`.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from .networks import MLP, Adam, named_variables, polyak_update, prefixed


def q_value(critic: MLP, q_obs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """Q(s, a) of one critic, shape [B]."""
    return tf.squeeze(critic(tf.concat([q_obs, action], axis=-1)), -1)


class TwinCritics(tf.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], *, rng: tf.random.Generator,
                 lr: float, layer_norm: bool = False):
        """in_dim = state input + action size. The four networks draw their initial weights
        from `rng` in the order critic1, critic2, target1, target2 (the targets are then
        overwritten with copies of the critics); checkpoints and seeds depend on it."""
        super().__init__(name="critics")
        self.online = tuple(MLP(in_dim, hidden, 1, rng=rng, name=f"critic{i}",
                                layer_norm=layer_norm) for i in (1, 2))
        self.targets = tuple(MLP(in_dim, hidden, 1, rng=rng, name=f"target{i}",
                                 layer_norm=layer_norm) for i in (1, 2))
        for target, critic in zip(self.targets, self.online, strict=True):
            target.copy_from(critic)
        self.opt = Adam(named_variables(self._nets(self.online, "critic")), lr)

    @staticmethod
    def _nets(pair, stem: str) -> dict[str, MLP]:
        return {f"{stem}{i}": net for i, net in enumerate(pair, start=1)}

    @property
    def weights(self) -> list[tf.Variable]:
        """The online critics' variables, Q1's then Q2's: the order `apply_gradients` takes."""
        return self.online[0].weights + self.online[1].weights

    def q_values(self, q_obs: tf.Tensor, action: tf.Tensor, *, target: bool = False):
        """(Q1(s, a), Q2(s, a)), each of shape [B]; of the target networks with target=True."""
        x = tf.concat([q_obs, action], axis=-1)
        nets = self.targets if target else self.online
        return tuple(tf.squeeze(q(x), -1) for q in nets)

    def min_q(self, q_obs: tf.Tensor, action: tf.Tensor, *, target: bool = False) -> tf.Tensor:
        """min(Q1, Q2)(s, a), shape [B]: clipped double Q."""
        return tf.minimum(*self.q_values(q_obs, action, target=target))

    def td_loss(self, q_obs: tf.Tensor, action: tf.Tensor, y: tf.Tensor):
        """mean((Q1 - y)^2) + mean((Q2 - y)^2) at the stored actions. Returns (loss, mean Q1)."""
        q1, q2 = self.q_values(q_obs, action)
        loss = tf.reduce_mean(tf.square(q1 - y)) + tf.reduce_mean(tf.square(q2 - y))
        return loss, tf.reduce_mean(q1)

    def apply_gradients(self, grads: Sequence[tf.Tensor]) -> None:
        """One Adam step on both critics; `grads` in the order of `weights`."""
        self.opt.apply(grads)

    def update_targets(self, tau) -> None:
        """target <- (1 - tau) * target + tau * critic, for both pairs."""
        for target, critic in zip(self.targets, self.online, strict=True):
            polyak_update(target.weights, critic.weights, tau)

    def state_variables(self) -> dict[str, tf.Variable]:
        """Networks, targets and optimiser state under their checkpoint names."""
        nets = {**self._nets(self.online, "critic"), **self._nets(self.targets, "target")}
        return {**named_variables(nets), **prefixed("opt_critic", self.opt.state_variables())}
