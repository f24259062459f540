"""Soft Actor-Critic (Haarnoja et al. 2018, with the learned temperature of the second paper).

Reading order: pure functions (the maths, each testable on its own) -> the agent, whose
`_train_step` is the one compiled update (no I/O, no Python side effects). The config,
`SACConfig`, is in config.py (fields shared with TD3 in `AgentConfig`); what both agents share
(construction, act, checkpoints) is in base.py, the critics in critics.py.

- Actor: a tanh-squashed Gaussian; the network outputs mean and log-std per action.
- Critics: two Q networks Q(s, a) and a Polyak-averaged target copy of each (CriticEnsemble);
  the soft TD target bootstraps from the smaller target Q (clipped double Q). With
  `num_critics` > 2 an ensemble: the min over `critic_subset` drawn at random, the actor on
  the ensemble's mean (REDQ, RLPD).
- With `critic_conservative` > 0 (fine-tuning on logs) the critic loss gains CQL's
  regulariser, `conservative_gap`: the policy's actions valued below the data's.
- Temperature alpha: learned so that the policy entropy tracks `target_entropy`
  (default -act_dim).
- Observations pass through a running normaliser owned by the agent (the trainer feeds it
  with `observe`). With `asymmetric_critic`, the critics also see privileged sim state
  (`critic_obs`), which the actor never sees.
- All three losses are computed from the same parameter snapshot and then applied (as in
  Brax and Acme), which lets TensorFlow run the critic and actor work side by side.
"""

from __future__ import annotations

import math

import tensorflow as tf

from .base import OffPolicyAgent, anchor_penalty
from .config import SACConfig
from .critics import CriticEnsemble
from .networks import MLP, Adam, prefixed

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)

__all__ = ["SAC", "SACConfig"]


# ---------------------------------------------------------------------------- pure functions

def policy_head(out: tf.Tensor, log_std_min: float, log_std_max: float):
    """Split the actor output into mean and a log-std squashed smoothly into its bounds."""
    mean, raw = tf.split(out, 2, axis=-1)
    log_std = log_std_min + 0.5 * (log_std_max - log_std_min) * (tf.tanh(raw) + 1.0)
    return mean, log_std


def squashed_gaussian(mean: tf.Tensor, log_std: tf.Tensor, noise: tf.Tensor):
    """a = tanh(mean + std * noise) and log pi(a|s), with the tanh change of variables.

    log pi(a) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) ], and
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) is the stable form of the correction.
    """
    u = mean + tf.exp(log_std) * noise
    log_gauss = -0.5 * tf.square(noise) - log_std - 0.5 * LOG_2PI
    log_det = 2.0 * (LOG_2 - u - tf.nn.softplus(-2.0 * u))
    return tf.tanh(u), tf.reduce_sum(log_gauss - log_det, axis=-1)


def sample_action(actor: MLP, obs: tf.Tensor, noise: tf.Tensor, bounds: tuple[float, float]):
    mean, log_std = policy_head(actor(obs), *bounds)
    return squashed_gaussian(mean, log_std, noise)


def soft_td_target(reward, terminated, next_q, next_logp, alpha, gamma):
    """y = r + gamma * (1 - terminated) * (Q'(s', a') - alpha * log pi(a'|s')), where
    Q' = min(Q1', Q2') of the target critics (CriticEnsemble.min_q)."""
    soft_value = next_q - alpha * next_logp
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(actor: MLP, critics: CriticEnsemble, batch, alpha, gamma, noise, bounds,
                rng=None):
    """Sum over the critics of the mean squared TD error. Returns (loss, mean Q1).

    batch: obs / next_obs (actor input), q_obs / next_q_obs (critic state input), action,
    reward, terminated; all already normalised. noise: standard normal [B, act_dim] for a'.
    rng: draws the ensemble's subset (unused for the twin pair).
    """
    next_action, next_logp = sample_action(actor, batch["next_obs"], noise, bounds)
    next_q = critics.min_q(batch["next_q_obs"], next_action, target=True, rng=rng)
    y = tf.stop_gradient(soft_td_target(batch["reward"], batch["terminated"], next_q,
                                        next_logp, alpha, gamma))
    return critics.td_loss(batch["q_obs"], batch["action"], y)


def conservative_gap(critics: CriticEnsemble, q_obs, data_action, policy_action):
    """Sum over the critics of mean(Qi(s, a_pi) - Qi(s, a_data)): CQL's regulariser with the
    policy as its sampling distribution (Kumar et al. 2020, eq. 2 with mu = pi). Added to the
    critic loss it lowers the value of what the policy would do below what the data did, at the
    data's states; where the data came from this policy it is about 0. `policy_action` is a
    sample of pi at s, held fixed (the critics' gradient only)."""
    q_pi = critics.q_values(q_obs, tf.stop_gradient(policy_action))
    q_data = critics.q_values(q_obs, data_action)
    return tf.add_n([tf.reduce_mean(p - d) for p, d in zip(q_pi, q_data, strict=True)])


def actor_loss(actor: MLP, critics: CriticEnsemble, obs, q_obs, alpha, noise, bounds):
    """mean(alpha * log pi(a|s) - Q(s, a)), a ~ pi(.|s), Q = min(Q1, Q2) (or the ensemble's
    mean: CriticEnsemble.actor_q). Returns (loss, log pi)."""
    action, logp = sample_action(actor, obs, noise, bounds)
    return tf.reduce_mean(alpha * logp - critics.actor_q(q_obs, action)), logp


def temperature_loss(log_alpha, logp, target_entropy):
    """-mean(log_alpha * (log pi + target_entropy)): raises alpha while entropy is too low."""
    return -tf.reduce_mean(log_alpha * tf.stop_gradient(logp + target_entropy))


def mean_action(out: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    """The deterministic action: tanh of the Gaussian's mean."""
    mean, _ = policy_head(out, *bounds)
    return tf.tanh(mean)


# ---------------------------------------------------------------------------- the agent

class SAC(OffPolicyAgent):
    algo = "sac"
    metric_names = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "q_mean")

    def __init__(self, config: SACConfig, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
                 seed: int = 0):
        super().__init__(config, obs_dim, act_dim, critic_obs_dim, seed)
        c = self.config
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.log_alpha = tf.Variable(math.log(c.init_alpha), dtype=tf.float32, name="log_alpha")
        self.alpha_opt = Adam({"log_alpha": self.log_alpha}, c.alpha_lr)
        if c.critic_conservative > 0:
            self.metric_names = (*SAC.metric_names, "conservative_gap")

    @property
    def bounds(self) -> tuple[float, float]:
        """(log_std_min, log_std_max) of the Gaussian policy."""
        return (self.config.log_std_min, self.config.log_std_max)

    def _build_actor(self, rng) -> MLP:
        return MLP(self.obs_dim, self.config.actor_hidden, 2 * self.act_dim, rng=rng,
                   name="actor")

    # --- the compiled update ---
    def _train_step(self, batch):
        c = self.config
        b = self._inputs(batch)
        alpha = tf.exp(self.log_alpha)
        next_noise, pi_noise = tf.unstack(self._rng.normal([2, c.batch_size, self.act_dim]))
        critic_vars = self.critics.weights
        extra = {}

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            c_loss, q_mean = critic_loss(self.actor, self.critics, b, alpha, c.gamma,
                                         next_noise, self.bounds, rng=self._rng)
            if c.critic_conservative > 0:  # a Python branch: traced in or out
                pi_action, _ = sample_action(self.actor, b["obs"],
                                             self._rng.normal([c.batch_size, self.act_dim]),
                                             self.bounds)
                gap = conservative_gap(self.critics, b["q_obs"], b["action"], pi_action)
                c_loss += c.critic_conservative * gap  # critic_loss reports the sum
                extra["conservative_gap"] = gap
        critic_grads = tape.gradient(c_loss, critic_vars)

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.actor.weights)
            a_loss, logp = actor_loss(self.actor, self.critics, b["obs"], b["q_obs"], alpha,
                                      pi_noise, self.bounds)
            a_loss += anchor_penalty(self._action_head, self.actor, self.anchor,
                                     c.actor_anchor, b["obs"])
        actor_grads = tape.gradient(a_loss, self.actor.weights)

        with tf.GradientTape() as tape:
            t_loss = temperature_loss(self.log_alpha, logp, self.target_entropy)
        alpha_grads = tape.gradient(t_loss, [self.log_alpha])

        self.critics.apply_gradients(critic_grads)
        self.actor_opt.apply(actor_grads)
        if c.learn_alpha:
            self.alpha_opt.apply(alpha_grads)
        self.critics.update_targets(c.tau)
        self.update_step.assign_add(1)
        return {"critic_loss": c_loss, "actor_loss": a_loss, "alpha_loss": t_loss,
                "alpha": alpha, "entropy": -tf.reduce_mean(logp), "q_mean": q_mean, **extra}

    # --- acting ---
    def _action_head(self, out):
        return mean_action(out, self.bounds)

    def _explore(self, obs):
        mean, log_std = policy_head(self.actor(self.obs_norm.normalize_tf(obs)), *self.bounds)
        action, _ = squashed_gaussian(mean, log_std, self._act_rng.normal(tf.shape(mean)))
        return action

    @property
    def alpha(self) -> float:
        return float(tf.exp(self.log_alpha))

    def _extra_variables(self) -> dict[str, tf.Variable]:
        return {"log_alpha": self.log_alpha,
                **prefixed("opt_alpha", self.alpha_opt.state_variables())}
