"""The critics SAC and TD3 share: an ensemble of Q networks, two by default (clipped double Q,
Fujimoto et al. 2018), more as an option (REDQ, Chen et al. 2021; RLPD, Ball et al. 2023).

N Q networks Q1..QN(s, a), a Polyak-averaged target copy of each, and one Adam over the online
critics. The algorithms bootstrap from the smallest target value over `subset` critics drawn at
random for each minibatch (`min_q(..., target=True)`; with N = subset = 2 that is the clipped
double Q of TD3 and SAC, and nothing is drawn), and regress every critic on one TD target
(`td_loss`). The SAC actor climbs `actor_q`: min(Q1, Q2) for the pair, the ensemble's mean for
N > 2 (as REDQ and RLPD). How the TD target is formed differs (soft in SAC, plain in TD3), so
the formulas stay in sac.py / td3.py.

With `dropout` > 0 every critic, online and target, drops hidden units at every evaluation
(DroQ, Hiraoka et al. 2022, with LayerNorm; the critics of A Walk in the Park): the mask is
drawn from the generator given at build, the agent's update stream, so it is checkpointed and
seeded with the rest.

The state input s is the critic's view: the (normalised) observation, or observation ++
privileged state with an asymmetric critic. Checkpoint names: `critic1/*` .. `criticN/*`,
`target1/*` .. `targetN/*` and the optimiser's `opt_critic/*`, so a twin-critic checkpoint
fills the first two critics of a larger ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from .networks import MLP, Adam, named_variables, polyak_update, prefixed


def q_value(critic: MLP, q_obs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """Q(s, a) of one critic, shape [B]."""
    return tf.squeeze(critic(tf.concat([q_obs, action], axis=-1)), -1)


class CriticEnsemble(tf.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], *, rng: tf.random.Generator,
                 lr: float, layer_norm: bool = False, num: int = 2, subset: int = 2,
                 dropout: float = 0.0, dropout_rng: tf.random.Generator | None = None):
        """in_dim = state input + action size; `num` critics, the target's min over `subset`
        of them. The networks draw their initial weights from `rng` in the order critic1 ..
        criticN, target1 .. targetN (the targets are then overwritten with copies of the
        critics); checkpoints and seeds depend on it. With `dropout` > 0, `dropout_rng` draws
        the masks."""
        super().__init__(name="critics")
        if not 1 <= subset <= num:
            raise ValueError(f"the target's subset ({subset}) must be 1 .. num ({num})")
        if dropout > 0 and dropout_rng is None:
            raise ValueError("critics with dropout need dropout_rng to draw the masks")
        self.num, self.subset = int(num), int(subset)
        self.dropout_rng = dropout_rng if dropout > 0 else None
        built = {"layer_norm": layer_norm, "dropout": dropout}
        self.online = tuple(MLP(in_dim, hidden, 1, rng=rng, name=f"critic{i}", **built)
                            for i in range(1, num + 1))
        self.targets = tuple(MLP(in_dim, hidden, 1, rng=rng, name=f"target{i}", **built)
                             for i in range(1, num + 1))
        for target, critic in zip(self.targets, self.online, strict=True):
            target.copy_from(critic)
        self.opt = Adam(named_variables(self._nets(self.online, "critic")), lr)

    @staticmethod
    def _nets(nets, stem: str) -> dict[str, MLP]:
        return {f"{stem}{i}": net for i, net in enumerate(nets, start=1)}

    @property
    def weights(self) -> list[tf.Variable]:
        """The online critics' variables, Q1's first: the order `apply_gradients` takes."""
        return [w for net in self.online for w in net.weights]

    def q_values(self, q_obs: tf.Tensor, action: tf.Tensor, *, target: bool = False):
        """(Q1(s, a), ..., QN(s, a)), each of shape [B]; of the targets with target=True."""
        x = tf.concat([q_obs, action], axis=-1)
        nets = self.targets if target else self.online
        return tuple(tf.squeeze(q(x, self.dropout_rng), -1) for q in nets)

    def min_q(self, q_obs: tf.Tensor, action: tf.Tensor, *, target: bool = False,
              rng: tf.random.Generator | None = None) -> tf.Tensor:
        """The smallest Q(s, a) over `subset` critics, shape [B]: drawn from `rng` when the
        subset is smaller than the ensemble, else all of them (clipped double Q)."""
        qs = tf.stack(self.q_values(q_obs, action, target=target))
        if self.subset < self.num:
            if rng is None:
                raise ValueError("a subset of the ensemble is drawn: pass rng")
            picked = tf.argsort(rng.uniform([self.num]))[:self.subset]
            qs = tf.gather(qs, picked)
        return tf.reduce_min(qs, axis=0)

    def actor_q(self, q_obs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
        """What the SAC actor climbs, shape [B]: min(Q1, Q2) for the twin pair, the mean over
        the ensemble for more critics."""
        qs = tf.stack(self.q_values(q_obs, action))
        return tf.reduce_min(qs, axis=0) if self.num == 2 else tf.reduce_mean(qs, axis=0)

    def td_loss(self, q_obs: tf.Tensor, action: tf.Tensor, y: tf.Tensor):
        """Sum over the critics of mean((Qi - y)^2) at the stored actions. Returns (loss,
        mean Q1)."""
        qs = self.q_values(q_obs, action)
        loss = tf.add_n([tf.reduce_mean(tf.square(q - y)) for q in qs])
        return loss, tf.reduce_mean(qs[0])

    def apply_gradients(self, grads: Sequence[tf.Tensor]) -> None:
        """One Adam step on every critic; `grads` in the order of `weights`."""
        self.opt.apply(grads)

    def update_targets(self, tau) -> None:
        """target <- (1 - tau) * target + tau * critic, for each pair."""
        for target, critic in zip(self.targets, self.online, strict=True):
            polyak_update(target.weights, critic.weights, tau)

    def state_variables(self) -> dict[str, tf.Variable]:
        """Networks, targets and optimiser state under their checkpoint names."""
        nets = {**self._nets(self.online, "critic"), **self._nets(self.targets, "target")}
        return {**named_variables(nets), **prefixed("opt_critic", self.opt.state_variables())}
