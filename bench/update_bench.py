"""Update efficiency: our compiled SAC/TD3 steps against a bare step doing the same matrix work.

    .venv/bin/python bench/update_bench.py [--obs 78 --act 12 --hidden 256 --batch 256]
                                           [--rounds 7 --calls 100 --intra 0 --inter 0]

The bare step is a tf.function with the matmuls of one SAC update and nothing else: actor
forward on next_obs, both target critics forward, both critics forward+backward, actor
forward+backward through both critics, and a plain SGD assign so nothing is pruned. No
normaliser, no log-probabilities, no Adam, no Polyak, no temperature.

Variants are timed in interleaved rounds in one process (this machine is noisy); the figure
is the median over rounds. Defaults: dm-control quadruped sizes (obs 78, act 12), 2x256,
batch 256. On a 2-core CPU, `--intra 1 --inter 2` (each op on one core, two ops at once)
was fastest for our step: the twin critics and the actor work run side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def bare_step_fn(obs_dim: int, act_dim: int, hidden: int, jit: bool):
    g = tf.random.Generator.from_seed(0)

    def mlp(sizes):
        return [(tf.Variable(g.normal([i, o]) / i**0.5), tf.Variable(tf.zeros([o])))
                for i, o in zip(sizes[:-1], sizes[1:], strict=True)]

    def fwd(params, x):
        for i, (w, b) in enumerate(params):
            x = tf.matmul(x, w) + b
            if i < len(params) - 1:
                x = tf.nn.relu(x)
        return x

    actor = mlp([obs_dim, hidden, hidden, 2 * act_dim])
    q1, q2, t1, t2 = (mlp([obs_dim + act_dim, hidden, hidden, 1]) for _ in range(4))
    flat = lambda *nets: [v for net in nets for layer in net for v in layer]  # noqa: E731
    critic_vars, actor_vars = flat(q1, q2), flat(actor)

    def step(batch):
        obs, next_obs, act = batch["obs"], batch["next_obs"], batch["action"]
        next_a = tf.tanh(fwd(actor, next_obs)[:, :act_dim])
        xn = tf.concat([next_obs, next_a], 1)
        y = tf.stop_gradient(tf.minimum(fwd(t1, xn), fwd(t2, xn)))
        with tf.GradientTape() as tape:
            x = tf.concat([obs, act], 1)
            c_loss = tf.reduce_mean((fwd(q1, x) - y) ** 2) + tf.reduce_mean((fwd(q2, x) - y) ** 2)
        c_grads = tape.gradient(c_loss, critic_vars)
        with tf.GradientTape() as tape:
            a = tf.tanh(fwd(actor, obs)[:, :act_dim])
            x = tf.concat([obs, a], 1)
            a_loss = -tf.reduce_mean(tf.minimum(fwd(q1, x), fwd(q2, x)))
        a_grads = tape.gradient(a_loss, actor_vars)
        for v, grad in zip(critic_vars + actor_vars, c_grads + a_grads, strict=True):
            v.assign_sub(1e-6 * grad)
        return c_loss + a_loss

    return tf.function(step, jit_compile=jit)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--obs", type=int, default=78)
    p.add_argument("--act", type=int, default=12)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--stack", type=int, default=4, help="K of the stacked-update variant")
    p.add_argument("--intra", type=int, default=0, help="0 = TensorFlow's default")
    p.add_argument("--inter", type=int, default=0, help="0 = TensorFlow's default")
    p.add_argument("--xla", action="store_true", help="also time XLA (jit_compile) variants")
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)

    from gaitforge.agents import make_agent

    hidden = (args.hidden, args.hidden)
    rng = np.random.default_rng(0)

    def batch(k=None):
        lead = () if k is None else (k,)
        return {"obs": rng.normal(size=(*lead, args.batch, args.obs)).astype(np.float32),
                "action": rng.uniform(-1, 1, (*lead, args.batch, args.act)).astype(np.float32),
                "reward": rng.normal(size=(*lead, args.batch)).astype(np.float32),
                "next_obs": rng.normal(size=(*lead, args.batch, args.obs)).astype(np.float32),
                "terminated": np.zeros((*lead, args.batch), np.float32)}

    one, stacked = batch(), batch(args.stack)
    one_tf = {k: tf.constant(v) for k, v in one.items()}
    cfg = {"actor_hidden": hidden, "critic_hidden": hidden, "batch_size": args.batch}
    sac = make_agent("sac", cfg, args.obs, args.act, seed=0)
    td3 = make_agent("td3", cfg, args.obs, args.act, seed=0)
    sac.observe(one["obs"])
    td3.observe(one["obs"])
    bare = bare_step_fn(args.obs, args.act, args.hidden, jit=False)
    bare_cf = bare.get_concrete_function(one_tf)
    sac_cf = sac._fns["update"].get_concrete_function()

    # name -> (callable, updates per call)
    variants = {
        "bare step (tf.function call)": (lambda: bare(one_tf), 1),
        "bare step (concrete function call)": (lambda: bare_cf(one_tf), 1),
        "SAC update() [numpy in, floats out]": (lambda: sac.update(one), 1),
        "SAC compiled step alone [tensors in]": (lambda: sac_cf(one_tf), 1),
        f"SAC update_stacked() K={args.stack}": (lambda: sac.update_stacked(stacked), args.stack),
        "TD3 update()": (lambda: td3.update(one), 1),
    }
    if args.xla:
        bare_xla = bare_step_fn(args.obs, args.act, args.hidden, jit=True)
        sac_xla = tf.function(sac._train_step, jit_compile=True)
        variants["bare step (XLA)"] = (lambda: bare_xla(one_tf), 1)
        variants["SAC step (XLA)"] = (lambda: sac_xla(one_tf), 1)

    for fn, _ in variants.values():  # trace and warm up
        for _ in range(5):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fn, per_call) in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            rates[name].append(args.calls * per_call / (time.perf_counter() - t0))

    print(f"obs {args.obs}, act {args.act}, 2x{args.hidden}, batch {args.batch}, "
          f"threads intra={args.intra} inter={args.inter}; median of {args.rounds} rounds")
    base = max(statistics.median(rates[name]) for name in rates if name.startswith("bare"))
    print("ratio = updates/s over the faster of the two bare variants")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"  {name:40s} {med:7.1f} updates/s   ratio {med / base:5.2f}")


if __name__ == "__main__":
    main()
