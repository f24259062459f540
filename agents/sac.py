"""Soft Actor-Critic (Haarnoja et al. 2018, with the learned temperature of the second paper).

Reading order: config -> pure functions (the maths, each testable on its own) -> the agent,
whose `_train_step` is the one compiled update (no I/O, no Python side effects).

- Actor: a tanh-squashed Gaussian; the network outputs mean and log-std per action.
- Critics: two Q networks Q(s, a) and a Polyak-averaged target copy of each; the TD target
  bootstraps from the smaller target Q (clipped double Q).
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
from dataclasses import dataclass

import tensorflow as tf

from .base import OffPolicyAgent, named_variables
from .networks import MLP, Adam, check_bool, check_hidden, check_int, check_number, polyak_update

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class SACConfig:
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False  # LayerNorm after each hidden layer of the critics
    asymmetric_critic: bool = False  # critics also see critic_obs (privileged sim state)
    batch_size: int = 256
    gamma: float = 0.99  # discount per control step
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 1.0
    learn_alpha: bool = True
    target_entropy: float | None = None  # None: -act_dim
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    normalize_obs: bool = True
    obs_clip: float = 10.0  # normalised observations are clipped to [-obs_clip, obs_clip]

    def __post_init__(self):
        check_hidden(self, "actor_hidden")
        check_hidden(self, "critic_hidden")
        for name in ("critic_layer_norm", "asymmetric_critic", "learn_alpha", "normalize_obs"):
            check_bool(self, name)
        check_int(self, "batch_size")
        check_number(self, "gamma", low=0.0, high=1.0)
        check_number(self, "tau", low=0.0, high=1.0)
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_alpha", "obs_clip"):
            check_number(self, name, low=0.0)
        if self.target_entropy is not None:
            check_number(self, "target_entropy")
        check_number(self, "log_std_min")
        check_number(self, "log_std_max", low=self.log_std_min)


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


def q_values(critics, q_obs: tf.Tensor, action: tf.Tensor) -> list[tf.Tensor]:
    """[Q1(s, a), Q2(s, a)], each of shape [B]."""
    x = tf.concat([q_obs, action], axis=-1)
    return [tf.squeeze(q(x), -1) for q in critics]


def soft_td_target(reward, terminated, next_q1, next_q2, next_logp, alpha, gamma):
    """y = r + gamma * (1 - terminated) * (min(Q1', Q2') - alpha * log pi(a'|s'))."""
    soft_value = tf.minimum(next_q1, next_q2) - alpha * next_logp
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(actor, critics, target_critics, batch, alpha, gamma, noise, bounds):
    """Sum over both critics of the mean squared TD error. Returns (loss, mean Q1).

    batch: obs / next_obs (actor input), q_obs / next_q_obs (critic state input), action,
    reward, terminated; all already normalised. noise: standard normal [B, act_dim] for a'.
    """
    next_action, next_logp = sample_action(actor, batch["next_obs"], noise, bounds)
    next_q1, next_q2 = q_values(target_critics, batch["next_q_obs"], next_action)
    y = tf.stop_gradient(soft_td_target(batch["reward"], batch["terminated"], next_q1,
                                        next_q2, next_logp, alpha, gamma))
    q1, q2 = q_values(critics, batch["q_obs"], batch["action"])
    loss = tf.reduce_mean(tf.square(q1 - y)) + tf.reduce_mean(tf.square(q2 - y))
    return loss, tf.reduce_mean(q1)


def actor_loss(actor, critics, obs, q_obs, alpha, noise, bounds):
    """mean(alpha * log pi(a|s) - min(Q1, Q2)(s, a)), a ~ pi(.|s). Returns (loss, log pi)."""
    action, logp = sample_action(actor, obs, noise, bounds)
    q1, q2 = q_values(critics, q_obs, action)
    return tf.reduce_mean(alpha * logp - tf.minimum(q1, q2)), logp


def temperature_loss(log_alpha, logp, target_entropy):
    """-mean(log_alpha * (log pi + target_entropy)): raises alpha while entropy is too low."""
    return -tf.reduce_mean(log_alpha * tf.stop_gradient(logp + target_entropy))


# ---------------------------------------------------------------------------- the agent

class SAC(OffPolicyAgent):
    algo = "sac"

    def __init__(self, config: SACConfig, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
                 seed: int = 0):
        c = self.config = config
        self._init_common(config, obs_dim, act_dim, critic_obs_dim, seed, self._build_actor)
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.bounds = (c.log_std_min, c.log_std_max)
        self.log_alpha = tf.Variable(math.log(c.init_alpha), dtype=tf.float32, name="log_alpha")
        self.actor_opt = Adam(named_variables({"actor": self.actor}), c.actor_lr)
        self.alpha_opt = Adam({"log_alpha": self.log_alpha}, c.alpha_lr)
        self.update_step = tf.Variable(tf.constant(0, tf.int64), trainable=False)

        self._compile(self._act_sample)

    def _build_actor(self, rng) -> None:
        c = self.config
        self.actor = MLP(self.obs_dim, c.actor_hidden, 2 * self.act_dim, rng=rng, name="actor")

    # --- the compiled update ---
    def _train_step(self, batch):
        c = self.config
        b = self._inputs(batch)
        alpha = tf.exp(self.log_alpha)
        next_noise, pi_noise = tf.unstack(self._rng.normal([2, c.batch_size, self.act_dim]))
        critic_vars = self.critics[0].weights + self.critics[1].weights

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            c_loss, q_mean = critic_loss(self.actor, self.critics, self.target_critics, b,
                                         alpha, c.gamma, next_noise, self.bounds)
        critic_grads = tape.gradient(c_loss, critic_vars)

        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.actor.weights)
            a_loss, logp = actor_loss(self.actor, self.critics, b["obs"], b["q_obs"], alpha,
                                      pi_noise, self.bounds)
        actor_grads = tape.gradient(a_loss, self.actor.weights)

        with tf.GradientTape() as tape:
            t_loss = temperature_loss(self.log_alpha, logp, self.target_entropy)
        alpha_grads = tape.gradient(t_loss, [self.log_alpha])

        self.critic_opt.apply(critic_grads)
        self.actor_opt.apply(actor_grads)
        if c.learn_alpha:
            self.alpha_opt.apply(alpha_grads)
        for target, critic in zip(self.target_critics, self.critics, strict=True):
            polyak_update(target.weights, critic.weights, c.tau)
        self.update_step.assign_add(1)
        return {"critic_loss": c_loss, "actor_loss": a_loss, "alpha_loss": t_loss,
                "alpha": alpha, "entropy": -tf.reduce_mean(logp), "q_mean": q_mean}

    def _train_steps(self, batches):
        metrics = {k: tf.constant(0.0) for k in ("critic_loss", "actor_loss", "alpha_loss",
                                                  "alpha", "entropy", "q_mean")}
        for i in tf.range(tf.shape(batches["obs"])[0]):
            metrics = self._train_step({k: v[i] for k, v in batches.items()})
        return metrics

    # --- acting ---
    def _act_mean(self, obs):
        mean, _ = policy_head(self.actor(self.obs_norm.normalize_tf(obs)), *self.bounds)
        return tf.tanh(mean)

    def _act_sample(self, obs):
        mean, log_std = policy_head(self.actor(self.obs_norm.normalize_tf(obs)), *self.bounds)
        action, _ = squashed_gaussian(mean, log_std, self._act_rng.normal(tf.shape(mean)))
        return action

    @property
    def alpha(self) -> float:
        return float(tf.exp(self.log_alpha))

    def _variables(self) -> dict[str, tf.Variable]:
        nets = {"actor": self.actor, "critic1": self.critics[0], "critic2": self.critics[1],
                "target1": self.target_critics[0], "target2": self.target_critics[1]}
        out = named_variables(nets)
        out["log_alpha"] = self.log_alpha
        for name, opt in (("opt_actor", self.actor_opt), ("opt_critic", self.critic_opt),
                          ("opt_alpha", self.alpha_opt)):
            out.update({f"{name}/{k}": v for k, v in opt.state_variables().items()})
        out["update_step"] = self.update_step
        out["rng/update"], out["rng/act"] = self._rng.state, self._act_rng.state
        return out
