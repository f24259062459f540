"""The operator's console end to end: `gaitforge deploy --teleop keyboard` in its own process on a
real pseudo-terminal (keys in, the command, damping, re-arm and the end seen in the episode
log, the terminal given back as it was), a command schedule, `logs export` and `logs plot`,
what `virtual-robot` says when it stops and its video, `eval --video` as MP4, the live view,
and the sentences for what a user can get wrong."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import termios
import threading
import time

import numpy as np
import pytest

from gaitforge.cli import main
from gaitforge.control.logger import read_log


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A small untrained servo_dog actor (32 x 32), exported as a checked bundle."""
    from gaitforge.agents import config_class, make_agent
    from gaitforge.agents.export import export_actor, random_observations
    from gaitforge.control.bundle import manifest, publish_bundle
    from gaitforge.control.policy_io import ActionConfig, ActionMapper, ObservationBuilder
    from gaitforge.robots.spec import load_robot_spec

    spec = load_robot_spec("servo_dog")
    builder, mapper = ObservationBuilder(spec), ActionMapper(spec, ActionConfig(scale_rad=0.1))
    cfg = config_class("sac")(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=8)
    agent = make_agent("sac", cfg, builder.size, spec.n_joints, seed=3)
    root = tmp_path_factory.mktemp("console")
    (root / "staging").mkdir()
    export_actor(agent, root / "staging", random_observations(agent, 16))
    publish_bundle(root / "staging", root / "bundle", manifest(
        spec=spec, observation_layout=builder.layout, normalizer={},
        action_layout=mapper.layout, control_dt_s=0.02, source={"run": "test"}),
        overwrite=False)
    return root / "bundle"


def _wait_for(folder, pred, proc, timeout_s=60.0):
    """The episode log in `folder`, read again and again until pred(log) holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"deploy exited with {proc.returncode}"
        paths = sorted(folder.glob("*.gflog"))
        if paths:
            log = read_log(paths[-1])
            if len(log) and pred(log):
                return log
        time.sleep(0.1)
    raise AssertionError("the log never showed it")


def _ran(log) -> np.ndarray:
    return np.isfinite(log.ticks["action"][:, 0])


def _since(log, kind: str) -> int:
    """Row index of the tick that logged the first `kind` event."""
    tick = next(e["tick"] for e in log.events if e["kind"] == kind)
    return int(np.searchsorted(log.ticks["tick"], tick))


def test_keyboard_drives_damps_rearms_and_ends_over_a_pty(bundle, tmp_path):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gaitforge.cli", "deploy", str(bundle), "--body", "sim:pybullet",
         "--realtime", "--teleop", "keyboard", "--no-live", "--duration", "60", "--log-dir",
         str(logs)], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    out = bytearray()
    reader = threading.Thread(target=_drain, args=(master, out), daemon=True)
    reader.start()
    try:
        _wait_for(logs, lambda log: _ran(log)[-5:].all(), proc)  # past the soft start
        assert b"keys: w/s or up/down: vx" in out
        os.write(master, b"w\x1b[A")  # vx +0.05 twice
        log = _wait_for(logs, lambda log: log.ticks["velocity_command"][-1, 0] == 0.1, proc)
        seen = log.ticks["velocity_command"][:, 0]
        assert set(np.unique(seen)) <= {0.0, 0.05, 0.1} and seen[0] == 0.0
        os.write(master, b" ")
        log = _wait_for(logs, lambda log: any(e["kind"] == "operator_damping"
                                              for e in log.events), proc)
        os.write(master, b"r")
        log = _wait_for(logs, lambda log: any(e["kind"] == "rearm" for e in log.events)
                        and _ran(log)[_since(log, "rearm"):].any(), proc)
        os.write(master, b"q")
        assert proc.wait(timeout=60) == 0, bytes(out).decode(errors="replace")
    finally:
        proc.kill()
        reader.join(timeout=5)
        assert termios.tcgetattr(slave) == before  # cbreak undone, Ctrl-Z and Ctrl-\ back
        os.close(slave)
        os.close(master)
    text = bytes(out).decode(errors="replace")
    assert "stopped: the operator ended the episode after" in text
    log = read_log(next(logs.glob("*.gflog")))
    assert log.complete and log.summary["outcome"] == "stopped" and log.summary["rearms"] == 1
    assert log.metadata["command_source"] == "keyboard"
    t, damp, rearm = log.ticks, _since(log, "operator_damping"), _since(log, "rearm")
    assert not _ran(log)[damp:rearm].any() and (t["command_mode"][damp:rearm] == 1).all()
    assert _ran(log)[rearm:].any()  # the policy drives again after the re-arm's soft start
    modes = t["command_mode"][np.flatnonzero(_ran(log))[-1] + 1:]
    assert (modes[:-1] != 2).all() and modes[-1] == 2 and (modes == 1).sum() >= 20
    assert (t["velocity_command"][damp:, 0] == 0.1).all()  # the command stays in force


def _drain(fd: int, out: bytearray) -> None:
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        out += data


def test_a_schedule_drives_the_episode_then_export_and_plot(bundle, tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("segments:\n  - {duration_s: 0.4, command: [0.2, 0, 0]}\n"
                    "  - {duration_s: 0.2, command: [0, 0, 0.3]}\n")
    logs = tmp_path / "logs"
    assert main(["deploy", str(bundle), "--body", "sim:mujoco", "--commands", str(plan),
                 "--log-dir", str(logs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("completed: ran all 30 policy ticks")  # 0.6 s of schedule, 50 Hz
    path = next(logs.glob("*.gflog"))
    log = read_log(path)
    vc = log.ticks["velocity_command"][_ran(log)]
    assert (vc[:20] == [0.2, 0, 0]).all() and (vc[20:] == [0, 0, 0.3]).all() and len(vc) == 30
    assert log.metadata["command"] == [0.2, 0.0, 0.0] and len(log.metadata["segments"]) == 2
    assert main(["logs", "plot", str(path)]) == 0
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert main(["logs", "export", str(path), "--format", "csv", "--out",
                 str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").is_file() and (tmp_path / "x.events.csv").is_file()
    capsys.readouterr()
    pytest.importorskip("mcap", reason="MCAP export needs the `logs` extra")
    assert main(["logs", "export", str(path)]) == 0
    assert f"{path.with_suffix('.mcap')}: {len(log)} ticks in " in capsys.readouterr().out


@pytest.mark.parametrize(("args", "expected"), [
    (["--commands", "P", "--teleop", "keyboard"], "--commands and --teleop both give"),
    (["--teleop", "keyboard"], "standard input is not one (a pipe or a file)"),
    (["--gamepad", "/dev/input/event9"], "--gamepad and --gamepad-map go with --teleop gamepad"),
    (["--commands", "missing.yaml"], "missing.yaml: file not found"),
])
def test_command_source_mistakes_are_sentences(bundle, tmp_path, capsys, monkeypatch, args,
                                               expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P").write_text("segments: [{duration_s: 1, command: [0, 0, 0]}]\n")
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115 - closed by pytest
    assert main(["deploy", str(bundle), "--log-dir", str(tmp_path), *args]) == 2
    assert expected in capsys.readouterr().err


def test_no_gamepad_plugged_in_is_a_sentence(bundle, tmp_path, capsys, monkeypatch):
    pytest.importorskip("evdev")
    monkeypatch.setattr("evdev.list_devices", lambda: [])
    assert main(["deploy", str(bundle), "--teleop", "gamepad", "--log-dir", str(tmp_path)]) == 2
    assert "no gamepad found under /dev/input" in capsys.readouterr().err


def test_a_missing_extra_is_a_sentence_naming_it(bundle, tmp_path, capsys, monkeypatch):
    import importlib

    real = importlib.import_module

    def without_extras(name, *a, **kw):
        if name in ("mcap", "evdev"):
            raise ImportError(f"No module named '{name}'")
        return real(name, *a, **kw)

    monkeypatch.setattr(importlib, "import_module", without_extras)
    assert main(["deploy", str(bundle), "--teleop", "gamepad", "--log-dir", str(tmp_path)]) == 2
    assert "--teleop gamepad needs the optional package `evdev`" in capsys.readouterr().err
    log = tmp_path / "none.gflog"
    from gaitforge.control.logger import EpisodeLogger

    EpisodeLogger(log, {"robot": "servo_dog"}, n_joints=12, obs_dim=3).close()
    assert main(["logs", "export", str(log)]) == 2
    assert "pip install 'gaitforge[logs]'" in capsys.readouterr().err


def test_virtual_robot_says_what_happened_and_records_it(tmp_path):
    video = tmp_path / "vr.gif"
    out = subprocess.run([sys.executable, "-m", "gaitforge.cli", "virtual-robot", "--duration",
                          "1.5", "--fault", "corrupt:0.5", "--video", str(video)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    assert "stopped after 1." in out and "walked 0.0" in out and "heading change" in out
    # nobody drives it: the servos stay off and the robot sinks to the ground once
    assert "1 fall(s) (height x1); on the ground at the end" in out
    assert "faults injected: none" in out  # corrupt acts on replies, and no host asked
    simulated = float(re.search(r"stopped after ([0-9.]+) s simulated", out)[1])
    frames = int(re.search(rf"video: {re.escape(str(video))} \((\d+) frames", out)[1])
    assert abs(frames - simulated * 25) <= 2  # a pose every 0.04 s of simulated time
    import imageio.v2 as imageio

    assert imageio.mimread(video)[0].shape == (240, 320, 3)  # (a GIF merges equal frames)


def test_eval_video_is_mp4_at_the_control_rate(tmp_path, monkeypatch):
    pytest.importorskip("imageio_ffmpeg", reason="MP4 needs the `video` extra")
    import imageio.v2 as imageio

    from gaitforge.cli import cmd_eval

    class Sim:
        control_dt_s, engine = 0.02, "pybullet"

    class Cfg:
        class env:  # noqa: N801 - the shape of RunConfig.env
            sim = Sim

    def evaluator(cfg, episodes, frames):
        def evaluate(agent):
            frames.extend(np.full((240, 320, 3), k, np.uint8) for k in range(0, 250, 5))
            return {"return": 1.0}
        return evaluate

    monkeypatch.setattr("gaitforge.cli.run_folders.load_run_agent",
                        lambda run, engine: (tmp_path, Cfg, None, tmp_path / "000100"))
    monkeypatch.setattr("gaitforge.cli.run_config.evaluator", evaluator)
    result = cmd_eval.evaluate_run("r", 1, None, "mp4")
    path = tmp_path / "eval-000100-pybullet.mp4"
    assert result["video"] == f"{path} (50 frames at 50 frames/s)"
    reader = imageio.get_reader(path)
    assert reader.get_meta_data()["fps"] == 50.0 and reader.count_frames() == 50
    result = cmd_eval.evaluate_run("r", 1, None, "gif")
    assert result["video"].endswith("eval-000100-pybullet.gif (25 frames at 25 frames/s)")


def test_the_live_view_shows_phase_command_timing_and_events():
    pytest.importorskip("rich")
    from rich.console import Console

    from gaitforge.cli.live_view import render
    from gaitforge.control.deploy import LiveStatus
    from gaitforge.control.loop import TickInfo

    status = LiveStatus(window=4)
    for k, (work, late) in enumerate([(1e-3, 0.0), (2e-3, 1e-4), (3e-3, 2e-4), (4e-3, 3e-4),
                                      (5e-3, 4e-4)]):
        status.update(TickInfo(k, k, 0.02 * k, 0.02 * k + late, late, int(k == 3)), work,
                      "policy", np.array([0.1, 0.0, -0.2]), 0.02 * k, 1, "")
    status.events.append((3, "rearm", "from phase damping"))
    console = Console(record=True, width=110, color_system=None)
    console.print(render(status, title="deploy", period_s=0.02, keys="q: end"))
    text = console.export_text()
    assert "policy" in text and "vx +0.10 m/s   vy +0.00 m/s   yaw -0.20 rad/s" in text
    # the last 4 ticks' work: 2, 3, 4, 5 ms; p50 3.5, p99 2 + 0.99 x 3 ... = 4.970, max 5
    assert "3.500 /  4.970 /  5.000 ms" in text and "overruns 1" in text
    assert "rearm" in text and "q: end" in text and "re-arms 1" in text
