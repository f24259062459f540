"""VecEnv: bitwise parity with hand-stepped envs, autoreset, seeds, worker errors, shutdown.

Real subprocesses, no mocks. The fake envs live in ``fake_envs`` so that spawned
workers can import them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from gaitforge.sim.vec_env import VecEnv, VecEnvConfig, VecEnvWorkerError

try:
    from . import fake_envs
except ImportError:  # tests/ laid out without __init__.py: pytest puts this dir on sys.path
    import fake_envs

# Workers import the fake envs by module name: make sure it is this directory's module.
assert Path(fake_envs.__file__).parent == Path(__file__).parent, fake_envs.__file__

N_ENVS = 5  # odd, so that workers=2 splits 3 + 2
N_STEPS = 300
SEED = 123


# ------------------------------------------------------------------------------ helpers


def _flatten(info: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in info.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v
    return out


def assert_bitwise(a: np.ndarray, b: np.ndarray, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.tobytes() == b.tobytes(), f"{what}: values differ"


def _actions(seed: int = 7, steps: int = N_STEPS, n: int = N_ENVS) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (steps, n, 2)).astype(np.float32)


def rollout_by_hand(env_fns, seed: int, actions: np.ndarray) -> list[dict]:
    """Step single envs one by one with the documented autoreset rule."""
    envs = [fn() for fn in env_fns]
    first = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    records = [
        {
            "obs": np.stack([o for o, _ in first]).astype(np.float32),
            "critic_obs": np.stack([i["critic_obs"] for _, i in first]),
        }
    ]
    for a in actions:
        rows = []
        for env, a_i in zip(envs, a, strict=True):
            obs, rew, term, trunc, info = env.step(a_i.copy())
            row = {
                "final_obs": obs,
                "reward": rew,
                "terminated": term,
                "truncated": trunc,
                "final_critic_obs": info["critic_obs"],
                "critic_obs": info["critic_obs"],
                "t": info["t"],
                "reward_terms/distance": info["reward_terms"]["distance"],
                "reward_terms/effort": info["reward_terms"]["effort"],
            }
            if term or trunc:
                obs, reset_info = env.reset()
                row["critic_obs"] = reset_info["critic_obs"]
            row["obs"] = obs
            rows.append(row)
        rec = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
        for k in ("obs", "final_obs", "reward"):
            rec[k] = rec[k].astype(np.float32)
        rec["done"] = rec["terminated"] | rec["truncated"]
        records.append(rec)
    for env in envs:
        env.close()
    return records


def rollout_vec(venv: VecEnv, seed: int, actions: np.ndarray) -> list[dict]:
    obs, info = venv.reset(seed=seed)
    records = [{"obs": obs, "critic_obs": info["critic_obs"]}]
    for a in actions:
        obs, rew, term, trunc, info = venv.step(a)
        rec = {"obs": obs, "reward": rew, "terminated": term, "truncated": trunc}
        rec.update(_flatten(info))
        records.append(rec)
    return records


def _children() -> set[int]:
    """Live or zombie child processes of this process, minus multiprocessing's
    resource tracker (a long-lived helper shared by all VecEnvs)."""
    me, pids = str(os.getpid()), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"resource_tracker" not in cmdline:
            pids.add(int(entry.name))
    return pids


def assert_no_workers_left(baseline: set[int]) -> None:
    assert mp.active_children() == []
    assert _children() <= baseline


# ------------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def reference():
    env_fns = [fake_envs.PointMassEnv] * N_ENVS
    return rollout_by_hand(env_fns, SEED, _actions())


def test_reference_rollout_covers_autoresets(reference):
    term = np.stack([r["terminated"] for r in reference[1:]])
    trunc = np.stack([r["truncated"] for r in reference[1:]])
    assert term.sum(axis=0).min() >= 1, "every env should terminate at least once"
    assert trunc.sum(axis=0).min() >= 1, "every env should be truncated at least once"
    assert (term | trunc).sum() >= 5 * N_ENVS
    assert not (term & trunc).any()


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_identical_to_hand_stepped_envs(reference, workers):
    baseline = _children()
    with VecEnv([fake_envs.PointMassEnv] * N_ENVS, workers=workers) as venv:
        got = rollout_vec(venv, SEED, _actions())
    assert_no_workers_left(baseline)

    assert len(got) == len(reference)
    assert set(got[1]) == set(reference[1]), "step info keys"
    for t, (g, r) in enumerate(zip(got, reference, strict=True)):
        for k in r:
            assert_bitwise(g[k], r[k], f"step {t} {k}")
        if t == 0:
            continue
        # final_obs / final_critic_obs: the terminal values where done, else the current ones.
        keep = ~g["done"]
        assert_bitwise(g["final_obs"][keep], g["obs"][keep], f"step {t} final_obs, not done")
        assert_bitwise(
            g["final_critic_obs"][keep], g["critic_obs"][keep], f"step {t} final_critic_obs"
        )
        # A new episode starts at t = 0; the terminal critic_obs has the last t.
        assert (g["critic_obs"][g["done"], 4] == 0).all()
        assert (g["final_critic_obs"][g["done"], 4] == g["t"][g["done"]]).all()


def test_shapes_and_dtypes():
    with VecEnv([fake_envs.PointMassEnv] * 3, workers=0) as venv:
        assert venv.num_envs == 3
        assert venv.single_observation_space.shape == (fake_envs.OBS_DIM,)
        assert venv.single_action_space.shape == (2,)
        obs, info = venv.reset(seed=0)
        assert obs.shape == (3, fake_envs.OBS_DIM) and obs.dtype == np.float32
        assert info["critic_obs"].shape == (3, fake_envs.CRITIC_DIM)
        assert info["episode_len"].shape == (3,)
        obs2, rew, term, trunc, info = venv.step(np.zeros((3, 2)))  # float64: cast
        assert rew.shape == (3,) and rew.dtype == np.float32
        assert term.dtype == trunc.dtype == info["done"].dtype == np.bool_
        assert info["final_obs"].shape == obs2.shape and info["final_obs"].dtype == np.float32
        assert info["reward_terms"]["distance"].shape == (3,)
        assert info["final_critic_obs"].shape == (3, fake_envs.CRITIC_DIM)
        # Returned arrays never alias each other or the next step's results.
        obs3 = venv.step(np.zeros((3, 2), np.float32))[0]
        assert not np.shares_memory(obs2, obs3)
        assert not np.shares_memory(obs2, info["final_obs"])


# -------------------------------------------------------------------------------- seeds


def _short(venv: VecEnv, seed, steps: int = 40) -> np.ndarray:
    obs, _ = venv.reset(seed=seed)
    out = [obs]
    for a in _actions(steps=steps, n=venv.num_envs):
        out.append(venv.step(a)[0])
    return np.stack(out)


def test_seeds_reproduce_and_differ():
    fns = [fake_envs.PointMassEnv] * 4
    with VecEnv(fns, workers=2) as a, VecEnv(fns, workers=0) as b:
        ra = _short(a, 5)
        assert_bitwise(_short(a, 5), ra, "same seed, same VecEnv")
        assert_bitwise(_short(b, 5), ra, "same seed, in-process")
        other = _short(b, 6)
        assert not np.array_equal(other[0], ra[0])
        # env i is seeded with seed + i: seed 6 gives env 0 what seed 5 gave env 1.
        assert_bitwise(other[0][0], ra[0][1], "seed + i")
        assert not np.array_equal(ra[0][0], ra[0][1]), "envs in one batch differ"


def test_constructor_seed_and_unseeded_reset():
    fns = [fake_envs.PointMassEnv] * 2
    with VecEnv(fns, seed=9) as a, VecEnv(fns) as b, VecEnv(fns) as c:
        assert_bitwise(a.reset()[0], b.reset(seed=9)[0], "constructor seed")
        assert not np.array_equal(a.reset()[0], b.reset(seed=9)[0]), "seed is used once"
        assert not np.array_equal(b.reset()[0], c.reset()[0]), "unseeded resets differ"


# ------------------------------------------------------------------------ worker errors


@pytest.mark.parametrize("where", ["init", "reset", "step"])
def test_worker_exception_surfaces_with_traceback(where):
    baseline = _children()
    fns = [fake_envs.PointMassEnv] * 3 + [partial(fake_envs.BombEnv, where, at_step=3)]
    venv = None
    with pytest.raises(VecEnvWorkerError) as excinfo:
        venv = VecEnv(fns, workers=2)
        venv.reset(seed=0)
        for _ in range(5):
            venv.step(np.zeros((4, 2), np.float32))
    message = str(excinfo.value)
    assert isinstance(excinfo.value, RuntimeError)
    assert "_bomb_goes_off" in message and f"boom in {where}" in message
    assert "Traceback (most recent call last)" in message
    assert "worker 1" in message and "envs 2..3" in message
    assert_no_workers_left(baseline)
    if venv is not None:  # construction succeeded: the VecEnv is closed now
        with pytest.raises(RuntimeError, match="closed"):
            venv.step(np.zeros((4, 2), np.float32))
        venv.close()
        venv.close()


@pytest.mark.parametrize(("how", "expected"), [("exit", "exit code 3"), ("kill", "SIGKILL")])
def test_dead_worker_is_reported(how, expected):
    baseline = _children()
    fns = [fake_envs.PointMassEnv, partial(fake_envs.DyingEnv, how, at_step=2)]
    venv = VecEnv(fns, workers=2)
    venv.reset(seed=0)
    venv.step(np.zeros((2, 2), np.float32))
    with pytest.raises(VecEnvWorkerError, match=expected) as excinfo:
        venv.step(np.zeros((2, 2), np.float32))
    assert "worker 1" in str(excinfo.value) and "died during 'step'" in str(excinfo.value)
    assert_no_workers_left(baseline)
    venv.close()


def test_in_process_exception_propagates_unchanged():
    venv = VecEnv([partial(fake_envs.BombEnv, "step", at_step=1)], workers=0)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="boom in step"):
        venv.step(np.zeros((1, 2), np.float32))
    venv.close()


# ----------------------------------------------------------------------------- shutdown


def test_close_reaps_workers_and_is_idempotent():
    baseline = _children()
    venv = VecEnv([fake_envs.PointMassEnv] * 4, workers=2)
    workers = _children() - baseline
    assert len(workers) == 2
    venv.reset(seed=0)
    venv.step(np.zeros((4, 2), np.float32))
    venv.close()
    venv.close()
    assert_no_workers_left(baseline)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "zombie or survivor"
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()


_LEAK_SCRIPT = """
import os, sys
from functools import partial
import numpy as np
sys.path.insert(0, {fake_dir!r})
import fake_envs
from gaitforge.sim.vec_env import VecEnv, VecEnvWorkerError

print("main-module-run", flush=True)  # must print once: workers skip __main__


def make_env_in_main():  # a factory defined in __main__: shipped by value
    return fake_envs.PointMassEnv()


if __name__ == "__main__":
    print(os.getpid(), flush=True)
    with VecEnv([make_env_in_main] * 3, workers=2) as v:
        v.reset(seed=0)
        for _ in range(50):
            v.step(np.zeros((3, 2), np.float32))
    for bad in (partial(fake_envs.BombEnv, "step", 2), partial(fake_envs.DyingEnv, "kill", 2)):
        v = VecEnv([fake_envs.PointMassEnv, bad], workers=2)
        v.reset(seed=0)
        try:
            for _ in range(3):
                v.step(np.zeros((2, 2), np.float32))
        except VecEnvWorkerError:
            pass
        else:
            raise SystemExit("no error raised")
    # Forgotten VecEnv: closed at garbage collection / interpreter exit.
    forgotten = VecEnv([fake_envs.PointMassEnv] * 2, workers=1)
    forgotten.reset(seed=0)
    print("done", flush=True)
"""


def test_script_exit_no_leaks_no_warnings_main_not_rerun(tmp_path):
    script = tmp_path / "leak_check.py"
    script.write_text(textwrap.dedent(_LEAK_SCRIPT.format(fake_dir=str(Path(__file__).parent))))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "done"
    assert proc.stdout.count("main-module-run") == 1, "a worker re-ran the parent's __main__"
    # The errors above are handled by the script; anything on stderr is a leak or warning.
    assert proc.stderr == "", proc.stderr
    pid = proc.stdout.split()[1]
    shm = Path("/dev/shm")
    if shm.is_dir():
        assert not list(shm.glob(f"gaitforge_vec_{pid}_*"))


# ---------------------------------------------------------------------------- validation


def test_bad_action_shape():
    with VecEnv([fake_envs.PointMassEnv] * 3) as venv:
        venv.reset(seed=0)
        with pytest.raises(ValueError, match=r"\(3, 2\)"):
            venv.step(np.zeros((3, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(3, 2\)"):
            venv.step(np.zeros(6, np.float32))


def test_constructor_validation():
    with pytest.raises(ValueError, match="empty"):
        VecEnv([])
    with pytest.raises(ValueError, match="workers"):
        VecEnv([fake_envs.PointMassEnv] * 2, workers=3)
    with pytest.raises(ValueError, match="workers"):
        VecEnv([fake_envs.PointMassEnv], workers=-1)
    with pytest.raises(ValueError, match="fork"):
        VecEnv([fake_envs.PointMassEnv], workers=1, start_method="fork")
    with pytest.raises(ValueError, match="env 1 has spaces"):
        VecEnv([fake_envs.PointMassEnv, fake_envs.OtherSpaceEnv])


def test_vec_env_config_validation():
    assert VecEnvConfig() == VecEnvConfig(num_envs=4, workers=0)
    VecEnvConfig(num_envs=2, workers=2)
    for kwargs, message in [({"num_envs": 0}, "num_envs must be a positive integer"),
                            ({"num_envs": True}, "num_envs must be a positive integer"),
                            ({"workers": -1}, "workers must be an integer >= 0"),
                            ({"workers": 1.0}, "workers must be an integer >= 0"),
                            ({"num_envs": 2, "workers": 3},
                             r"workers \(3\) must not exceed num_envs \(2\)")]:
        with pytest.raises(ValueError, match=message):
            VecEnvConfig(**kwargs)


def test_space_mismatch_across_workers_shuts_down():
    baseline = _children()
    with pytest.raises(ValueError, match="env 1 has spaces"):
        VecEnv([fake_envs.PointMassEnv, fake_envs.OtherSpaceEnv], workers=2)
    assert_no_workers_left(baseline)


@pytest.mark.parametrize("workers", [0, 2])
def test_critic_observation_space_comes_from_the_envs(workers):
    with VecEnv([fake_envs.PointMassEnv] * 3, workers=workers) as venv:
        space = venv.single_critic_observation_space
        assert space == fake_envs.PointMassEnv().critic_observation_space
        assert space.shape == (fake_envs.CRITIC_DIM,)
        _, info = venv.reset(seed=0)
        assert info["critic_obs"].shape[1:] == space.shape
    with VecEnv([fake_envs.NoCriticEnv] * 2, workers=workers) as venv:
        assert venv.single_critic_observation_space is None
    # a gymnasium env behind wrappers, with no such attribute anywhere
    with VecEnv([partial(gymnasium.make, "Pendulum-v1")] * 2, workers=workers) as venv:
        assert venv.single_critic_observation_space is None


@pytest.mark.parametrize("workers", [0, 2])
def test_critic_observation_space_mismatch_is_refused(workers):
    baseline = _children()
    with pytest.raises(ValueError, match="env 1 has critic observation space"):
        VecEnv([fake_envs.PointMassEnv, fake_envs.OtherCriticEnv], workers=workers)
    assert_no_workers_left(baseline)


def test_step_before_reset():
    with VecEnv([fake_envs.PointMassEnv]) as venv, pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((1, 2), np.float32))


def test_obs_info_key_missing_from_reset_info():
    class NoCriticAtReset(fake_envs.PointMassEnv):
        def reset(self, *, seed=None, options=None):
            obs, _ = super().reset(seed=seed, options=options)
            return obs, {}

    with VecEnv([partial(NoCriticAtReset, min_len=1, max_len=1)]) as venv:
        venv.reset(seed=0)
        with pytest.raises(ValueError, match="critic_obs"):
            venv.step(np.zeros((1, 2), np.float32))


# ---------------------------------------------------------------------------------- call


@pytest.mark.parametrize("workers", [0, 2])
def test_call(workers):
    with VecEnv([fake_envs.PointMassEnv] * 3, workers=workers) as venv:
        assert venv.call("set_gain", 0.5) == [0.5, 0.5, 0.5]
        assert venv.call("bound_m") == [fake_envs.PointMassEnv.bound_m] * 3
        with pytest.raises((AttributeError, VecEnvWorkerError)):
            venv.call("no_such_method")
