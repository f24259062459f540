"""Replay buffer: ring wraparound, partition ratios, save/load, clear errors on bad files."""

import numpy as np
import pytest

from gaitforge.agents.checkpoint import CheckpointError, load_arrays, save_arrays
from gaitforge.agents.replay import ReplayBuffer


def rows(values, obs_dim=2, act_dim=1, critic_obs_dim=0):
    """Transitions whose every field is filled with the row's value (easy to trace)."""
    v = np.asarray(values, np.float32)
    n = len(v)
    out = {"obs": np.repeat(v[:, None], obs_dim, 1), "action": np.repeat(v[:, None], act_dim, 1),
           "reward": v, "next_obs": np.repeat(v[:, None] + 0.5, obs_dim, 1),
           "terminated": (v % 2 == 0).astype(np.float32)}
    if critic_obs_dim:
        out["critic_obs"] = np.repeat(v[:, None], critic_obs_dim, 1)
        out["next_critic_obs"] = np.repeat(v[:, None] - 0.5, critic_obs_dim, 1)
    assert all(len(x) == n for x in out.values())
    return out


def test_ring_wraps_around():
    buf = ReplayBuffer(2, 1, capacity=5)
    buf.add(**rows([0, 1, 2]))
    buf.add(**rows([3, 4, 5, 6]))  # 5 and 6 overwrite the oldest rows 0 and 1
    ring = buf._parts["main"]
    assert (len(buf), ring.ptr) == (5, 2)
    np.testing.assert_array_equal(ring.data["reward"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(ring.data["next_obs"][:, 0], [5.5, 6.5, 2.5, 3.5, 4.5])
    buf.add(**rows(np.arange(10, 22)))  # more rows than capacity: the newest 5 survive
    assert sorted(ring.data["reward"].tolist()) == [17, 18, 19, 20, 21]
    assert len(buf) == 5


def test_sampling_is_uniform_and_reproducible():
    buf = ReplayBuffer(2, 1, capacity=10)
    buf.add(**rows(range(10)))
    a = buf.sample(4000, np.random.default_rng(3))
    b = buf.sample(4000, np.random.default_rng(3))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    counts = np.bincount(a["reward"].astype(int), minlength=10)
    assert counts.min() > 300 and counts.max() < 500  # 400 expected each
    # each sampled row is a whole transition, not a mix of rows
    np.testing.assert_array_equal(a["next_obs"][:, 0], a["reward"] + 0.5)


def test_partitions_sample_in_the_chosen_ratio():
    buf = ReplayBuffer(2, 1, capacity={"sim": 100, "real": 20})
    buf.add(**rows(np.zeros(100)), partition="sim")  # reward 0 marks sim rows
    buf.add(**rows(np.ones(20)), partition="real")  # reward 1 marks real rows
    rng = np.random.default_rng(0)
    batch = buf.sample(8, rng, ratio={"sim": 0.75, "real": 0.25})
    np.testing.assert_array_equal(batch["reward"], [0] * 6 + [1] * 2)
    batch = buf.sample(10, rng, ratio={"sim": 0.75, "real": 0.25})  # 7.5 / 2.5: rounded
    assert batch["reward"].sum() in (2, 3) and len(batch["reward"]) == 10
    only_real = buf.sample(5, rng, ratio={"real": 1.0})
    np.testing.assert_array_equal(only_real["reward"], np.ones(5))
    # without a ratio: uniform over all 120 rows, so about 1/6 real
    mixed = buf.sample(6000, rng)
    assert abs(mixed["reward"].mean() - 20 / 120) < 0.03
    stacked = buf.sample(8, rng, ratio={"sim": 0.5, "real": 0.5}, num_batches=3)
    assert stacked["obs"].shape == (3, 8, 2)
    np.testing.assert_array_equal(stacked["reward"].sum(axis=1), [4, 4, 4])


def test_bad_ratios_and_inputs_are_named():
    buf = ReplayBuffer(2, 1, capacity={"sim": 10, "real": 10})
    buf.add(**rows([1, 2]), partition="sim")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown partition 'rael'.*known: sim, real"):
        buf.sample(4, rng, ratio={"sim": 0.5, "rael": 0.5})
    with pytest.raises(ValueError, match="sum to 1"):
        buf.sample(4, rng, ratio={"sim": 0.5, "real": 0.2})
    with pytest.raises(ValueError, match="partition 'real' is empty"):
        buf.sample(4, rng, ratio={"sim": 0.5, "real": 0.5})
    with pytest.raises(ValueError, match="empty buffer"):
        ReplayBuffer(2, 1, 5).sample(4, rng)
    bad = rows([1, 2])
    bad["next_obs"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="field 'next_obs' has shape"):
        buf.add(**bad, partition="sim")
    with pytest.raises(ValueError, match="critic_obs and next_critic_obs are required"):
        ReplayBuffer(2, 1, 5, critic_obs_dim=3).add(**rows([1]))


def test_save_load_round_trip(tmp_path):
    buf = ReplayBuffer(2, 1, capacity={"sim": 7, "real": 4}, critic_obs_dim=3)
    buf.add(**rows(range(10), critic_obs_dim=3), partition="sim")  # wrapped
    buf.add(**rows([50, 51], critic_obs_dim=3), partition="real")  # partly full
    path = tmp_path / "replay.npz"
    buf.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]  # no temp file left
    back = ReplayBuffer.load(path)
    assert back.partitions == ("sim", "real") and back.critic_obs_dim == 3
    for name in buf.partitions:
        a, b = buf._parts[name], back._parts[name]
        assert (a.ptr, a.size, a.capacity) == (b.ptr, b.size, b.capacity)
        for field in buf.shapes:
            np.testing.assert_array_equal(a.data[field][: a.size], b.data[field][: b.size])
    x = buf.sample(16, np.random.default_rng(5), ratio={"sim": 0.5, "real": 0.5})
    y = back.sample(16, np.random.default_rng(5), ratio={"sim": 0.5, "real": 0.5})
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])
    back.add(**rows([99], critic_obs_dim=3), partition="real")  # keeps filling where it was
    assert back.size("real") == 3


def test_truncated_or_corrupted_file_gives_a_clear_error(tmp_path):
    buf = ReplayBuffer(2, 1, capacity=100)
    buf.add(**rows(range(100)))
    path = tmp_path / "replay.npz"
    buf.save(path)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.npz: corrupt or truncated"):
        ReplayBuffer.load(truncated)

    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle:middle + 8] = bytes(b ^ 0xFF for b in flipped[middle:middle + 8])
    corrupted = tmp_path / "corrupted.npz"
    corrupted.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted.npz"):
        ReplayBuffer.load(corrupted)

    with pytest.raises(CheckpointError, match="missing.npz: file not found"):
        ReplayBuffer.load(tmp_path / "missing.npz")


def test_wrong_shapes_and_missing_fields_name_the_field(tmp_path):
    buf = ReplayBuffer(2, 1, capacity={"sim": 10})
    buf.add(**rows(range(4)), partition="sim")
    state = buf.get_state()

    bad = dict(state)
    bad["sim/obs"] = bad["sim/obs"][:, :1]
    save_arrays(tmp_path / "shape.npz", bad)
    with pytest.raises(CheckpointError, match=r"shape.npz: replay field 'sim/obs' has shape"):
        ReplayBuffer.load(tmp_path / "shape.npz")

    missing = {k: v for k, v in state.items() if k != "sim/terminated"}
    save_arrays(tmp_path / "missing_field.npz", missing)
    with pytest.raises(CheckpointError, match="'sim/terminated' is missing"):
        ReplayBuffer.load(tmp_path / "missing_field.npz")

    save_arrays(tmp_path / "other.npz", {"x": np.zeros(3)})
    with pytest.raises(CheckpointError, match="other.npz: replay field 'format' is missing"):
        ReplayBuffer.load(tmp_path / "other.npz")


def test_save_is_atomic_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_arrays(path, {"a": np.arange(3)})
    with pytest.raises(CheckpointError, match="object array"):
        save_arrays(path, {"a": np.arange(4), "b": np.array([None, 1], dtype=object)})
    np.testing.assert_array_equal(load_arrays(path)["a"], np.arange(3))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
