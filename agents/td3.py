"""TD3: Twin Delayed Deep Deterministic policy gradient (Fujimoto et al. 2018).

Reading order: pure functions -> the agent, whose `_train_step` is the one compiled update
(no I/O, no Python side effects). The config, `TD3Config`, is in config.py (fields shared with
SAC in `AgentConfig`); what both agents share is in base.py, the critics in critics.py.

- Actor: deterministic, a = tanh(MLP(s)); exploration adds Gaussian noise in `act`.
- Critics: two Q networks and their Polyak-averaged targets (CriticEnsemble); the TD target
  takes the smaller target Q (clipped double Q; with `num_critics` > 2, the min over
  `critic_subset` of them drawn at random).
- Target policy smoothing: the target action is the target actor's action plus clipped
  Gaussian noise, a' = clip(mu'(s') + clip(sigma * eps, -c, c), -1, 1).
- Delayed updates: the critics learn every update; the actor and all targets only every
  `policy_delay` updates (update number policy_delay, 2 * policy_delay, ...), the actor
  against the freshly updated critic 1, as in the paper.
- Observations pass through a running normaliser owned by the agent (`observe`). With
  `asymmetric_critic`, the critics also see privileged sim state the actor never sees.
"""

from __future__ import annotations

import tensorflow as tf

from .base import OffPolicyAgent, anchor_penalty
from .config import TD3Config
from .critics import CriticEnsemble, q_value
from .networks import MLP, named_variables, polyak_update

__all__ = ["TD3", "TD3Config"]


# ---------------------------------------------------------------------------- pure functions

def smoothed_target_action(target_actor: MLP, next_obs, noise, noise_std, noise_clip):
    """a' = clip(tanh(target_actor(s')) + clip(noise_std * noise, -clip, clip), -1, 1),
    noise ~ N(0, 1) given by the caller."""
    eps = tf.clip_by_value(noise_std * noise, -noise_clip, noise_clip)
    return tf.clip_by_value(tf.tanh(target_actor(next_obs)) + eps, -1.0, 1.0)


def td_target(reward, terminated, next_q, gamma):
    """y = r + gamma * (1 - terminated) * Q'(s', a'), where Q' = min(Q1', Q2') of the target
    critics (CriticEnsemble.min_q)."""
    return reward + gamma * (1.0 - terminated) * next_q


def critic_loss(target_actor: MLP, critics: CriticEnsemble, batch, gamma, noise, noise_std,
                noise_clip, rng=None):
    """Sum over the critics of the mean squared TD error. Returns (loss, mean Q1).

    batch: obs / next_obs (actor input), q_obs / next_q_obs (critic state input), action,
    reward, terminated; all already normalised. noise: standard normal [B, act_dim].
    """
    next_action = smoothed_target_action(target_actor, batch["next_obs"], noise, noise_std,
                                         noise_clip)
    next_q = critics.min_q(batch["next_q_obs"], next_action, target=True, rng=rng)
    y = tf.stop_gradient(td_target(batch["reward"], batch["terminated"], next_q, gamma))
    return critics.td_loss(batch["q_obs"], batch["action"], y)


def actor_loss(actor: MLP, critic1: MLP, obs, q_obs):
    """-mean Q1(s, tanh(actor(s))): the deterministic policy gradient through critic 1."""
    return -tf.reduce_mean(q_value(critic1, q_obs, tf.tanh(actor(obs))))


# ---------------------------------------------------------------------------- the agent

class TD3(OffPolicyAgent):
    algo = "td3"
    metric_names = ("critic_loss", "actor_loss", "q_mean", "actor_updated")

    def __init__(self, config: TD3Config, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
                 seed: int = 0):
        super().__init__(config, obs_dim, act_dim, critic_obs_dim, seed)
        self.last_actor_loss = tf.Variable(0.0, trainable=False)  # metric only

    def _build_actor(self, rng) -> MLP:
        """The actor, then the target actor (both draw initial weights, in this order)."""
        c, n = self.config, self.obs_dim
        actor = MLP(n, c.actor_hidden, self.act_dim, rng=rng, name="actor")
        self.target_actor = MLP(n, c.actor_hidden, self.act_dim, rng=rng, name="t_actor")
        self.target_actor.copy_from(actor)
        return actor

    # --- the compiled update ---
    def _train_step(self, batch):
        c = self.config
        b = self._inputs(batch)
        noise = self._rng.normal([c.batch_size, self.act_dim])
        critic_vars = self.critics.weights
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            c_loss, q_mean = critic_loss(self.target_actor, self.critics, b, c.gamma, noise,
                                         c.target_noise, c.target_noise_clip, rng=self._rng)
        self.critics.apply_gradients(tape.gradient(c_loss, critic_vars))
        self.update_step.assign_add(1)

        def actor_and_targets():
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self.actor.weights)
                a_loss = actor_loss(self.actor, self.critics.online[0], b["obs"], b["q_obs"])
                a_loss += anchor_penalty(self._action_head, self.actor, self.anchor,
                                         c.actor_anchor, b["obs"])
            self.actor_opt.apply(tape.gradient(a_loss, self.actor.weights))
            polyak_update(self.target_actor.weights, self.actor.weights, c.tau)
            self.critics.update_targets(c.tau)
            self.last_actor_loss.assign(a_loss)
            return tf.constant(1.0)

        delayed = tf.equal(self.update_step % c.policy_delay, 0)
        actor_updated = tf.cond(delayed, actor_and_targets, lambda: tf.constant(0.0))
        return {"critic_loss": c_loss, "actor_loss": tf.identity(self.last_actor_loss),
                "q_mean": q_mean, "actor_updated": actor_updated}

    # --- acting ---
    def _action_head(self, out):
        return tf.tanh(out)

    def _explore(self, obs):
        action = self._policy.action(obs)
        noise = self.config.exploration_noise * self._act_rng.normal(tf.shape(action))
        return tf.clip_by_value(action + noise, -1.0, 1.0)

    def _extra_variables(self) -> dict[str, tf.Variable]:
        return {**named_variables({"target_actor": self.target_actor}),
                "last_actor_loss": self.last_actor_loss}
