"""TD3: Twin Delayed Deep Deterministic policy gradient (Fujimoto et al. 2018).

Reading order: config -> pure functions -> the agent, whose `_train_step` is the one compiled
update (no I/O, no Python side effects).

- Actor: deterministic, a = tanh(MLP(s)); exploration adds Gaussian noise in `act`.
- Critics: two Q networks and their Polyak-averaged targets; the TD target takes the smaller
  target Q (clipped double Q).
- Target policy smoothing: the target action is the target actor's action plus clipped
  Gaussian noise, a' = clip(mu'(s') + clip(sigma * eps, -c, c), -1, 1).
- Delayed updates: the critics learn every update; the actor and all targets only every
  `policy_delay` updates (update number policy_delay, 2 * policy_delay, ...), the actor
  against the freshly updated critic 1, as in the paper.
- Observations pass through a running normaliser owned by the agent (`observe`). With
  `asymmetric_critic`, the critics also see privileged sim state the actor never sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from .base import OffPolicyAgent, named_variables
from .networks import MLP, Adam, check_bool, check_hidden, check_int, check_number, polyak_update


@dataclass(frozen=True)
class TD3Config:
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False  # LayerNorm after each hidden layer of the critics
    asymmetric_critic: bool = False  # critics also see critic_obs (privileged sim state)
    batch_size: int = 256
    gamma: float = 0.99  # discount per control step
    tau: float = 0.005  # Polyak rate of the targets
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    policy_delay: int = 2  # actor and targets update once per this many critic updates
    target_noise: float = 0.2  # std of the target policy smoothing noise (action units)
    target_noise_clip: float = 0.5
    exploration_noise: float = 0.1  # std of the Gaussian noise act() adds when exploring
    normalize_obs: bool = True
    obs_clip: float = 10.0

    def __post_init__(self):
        check_hidden(self, "actor_hidden")
        check_hidden(self, "critic_hidden")
        for name in ("critic_layer_norm", "asymmetric_critic", "normalize_obs"):
            check_bool(self, name)
        for name in ("batch_size", "policy_delay"):
            check_int(self, name)
        check_number(self, "gamma", low=0.0, high=1.0)
        check_number(self, "tau", low=0.0, high=1.0)
        for name in ("actor_lr", "critic_lr", "obs_clip"):
            check_number(self, name, low=0.0)
        for name in ("target_noise", "target_noise_clip", "exploration_noise"):
            check_number(self, name, low=0.0, low_open=False)


# ---------------------------------------------------------------------------- pure functions

def smoothed_target_action(target_actor: MLP, next_obs, noise, noise_std, noise_clip):
    """a' = clip(tanh(target_actor(s')) + clip(noise_std * noise, -clip, clip), -1, 1),
    noise ~ N(0, 1) given by the caller."""
    eps = tf.clip_by_value(noise_std * noise, -noise_clip, noise_clip)
    return tf.clip_by_value(tf.tanh(target_actor(next_obs)) + eps, -1.0, 1.0)


def q_values(critics, q_obs, action) -> list[tf.Tensor]:
    """[Q1(s, a), Q2(s, a)], each of shape [B]."""
    x = tf.concat([q_obs, action], axis=-1)
    return [tf.squeeze(q(x), -1) for q in critics]


def td_target(reward, terminated, next_q1, next_q2, gamma):
    """y = r + gamma * (1 - terminated) * min(Q1', Q2')."""
    return reward + gamma * (1.0 - terminated) * tf.minimum(next_q1, next_q2)


def critic_loss(target_actor, critics, target_critics, batch, gamma, noise, noise_std,
                noise_clip):
    """Sum over both critics of the mean squared TD error. Returns (loss, mean Q1).

    batch: obs / next_obs (actor input), q_obs / next_q_obs (critic state input), action,
    reward, terminated; all already normalised. noise: standard normal [B, act_dim].
    """
    next_action = smoothed_target_action(target_actor, batch["next_obs"], noise, noise_std,
                                         noise_clip)
    next_q1, next_q2 = q_values(target_critics, batch["next_q_obs"], next_action)
    y = tf.stop_gradient(td_target(batch["reward"], batch["terminated"], next_q1, next_q2,
                                   gamma))
    q1, q2 = q_values(critics, batch["q_obs"], batch["action"])
    loss = tf.reduce_mean(tf.square(q1 - y)) + tf.reduce_mean(tf.square(q2 - y))
    return loss, tf.reduce_mean(q1)


def actor_loss(actor, critic1, obs, q_obs):
    """-mean Q1(s, tanh(actor(s))): the deterministic policy gradient through critic 1."""
    action = tf.tanh(actor(obs))
    return -tf.reduce_mean(q_values([critic1], q_obs, action)[0])


# ---------------------------------------------------------------------------- the agent

class TD3(OffPolicyAgent):
    algo = "td3"

    def __init__(self, config: TD3Config, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
                 seed: int = 0):
        c = self.config = config
        self._init_common(config, obs_dim, act_dim, critic_obs_dim, seed, self._build_actor)
        self.actor_opt = Adam(named_variables({"actor": self.actor}), c.actor_lr)
        self.update_step = tf.Variable(tf.constant(0, tf.int64), trainable=False)
        self.last_actor_loss = tf.Variable(0.0, trainable=False)  # metric only

        self._compile(self._act_explore)

    def _build_actor(self, rng) -> None:
        c, n = self.config, self.obs_dim
        self.actor = MLP(n, c.actor_hidden, self.act_dim, rng=rng, name="actor")
        self.target_actor = MLP(n, c.actor_hidden, self.act_dim, rng=rng, name="t_actor")
        self.target_actor.copy_from(self.actor)

    # --- the compiled update ---
    def _train_step(self, batch):
        c = self.config
        b = self._inputs(batch)
        noise = self._rng.normal([c.batch_size, self.act_dim])
        critic_vars = self.critics[0].weights + self.critics[1].weights
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            c_loss, q_mean = critic_loss(self.target_actor, self.critics, self.target_critics,
                                         b, c.gamma, noise, c.target_noise, c.target_noise_clip)
        self.critic_opt.apply(tape.gradient(c_loss, critic_vars))
        self.update_step.assign_add(1)

        def actor_and_targets():
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self.actor.weights)
                a_loss = actor_loss(self.actor, self.critics[0], b["obs"], b["q_obs"])
            self.actor_opt.apply(tape.gradient(a_loss, self.actor.weights))
            polyak_update(self.target_actor.weights, self.actor.weights, c.tau)
            for target, critic in zip(self.target_critics, self.critics, strict=True):
                polyak_update(target.weights, critic.weights, c.tau)
            self.last_actor_loss.assign(a_loss)
            return tf.constant(1.0)

        delayed = tf.equal(self.update_step % c.policy_delay, 0)
        actor_updated = tf.cond(delayed, actor_and_targets, lambda: tf.constant(0.0))
        return {"critic_loss": c_loss, "actor_loss": tf.identity(self.last_actor_loss),
                "q_mean": q_mean, "actor_updated": actor_updated}

    def _train_steps(self, batches):
        metrics = {k: tf.constant(0.0)
                   for k in ("critic_loss", "actor_loss", "q_mean", "actor_updated")}
        for i in tf.range(tf.shape(batches["obs"])[0]):
            metrics = self._train_step({k: v[i] for k, v in batches.items()})
        return metrics

    # --- acting ---
    def _act_mean(self, obs):
        return tf.tanh(self.actor(self.obs_norm.normalize_tf(obs)))

    def _act_explore(self, obs):
        action = self._act_mean(obs)
        noise = self.config.exploration_noise * self._act_rng.normal(tf.shape(action))
        return tf.clip_by_value(action + noise, -1.0, 1.0)

    def _variables(self) -> dict[str, tf.Variable]:
        nets = {"actor": self.actor, "target_actor": self.target_actor,
                "critic1": self.critics[0], "critic2": self.critics[1],
                "target1": self.target_critics[0], "target2": self.target_critics[1]}
        out = named_variables(nets)
        for name, opt in (("opt_actor", self.actor_opt), ("opt_critic", self.critic_opt)):
            out.update({f"{name}/{k}": v for k, v in opt.state_variables().items()})
        out["update_step"] = self.update_step
        out["last_actor_loss"] = self.last_actor_loss
        out["rng/update"], out["rng/act"] = self._rng.state, self._act_rng.state
        return out
