"""Every error a user can cause is a sentence: a table of bad inputs walked through the real
`gaitforge` command, each in its own process, as a user runs it. Each must end with exit
status 2 and at most two lines on stderr that name what is at fault (file, field, value, flag,
port, servo), and never a traceback.

The classes: YAML that is not UTF-8 or not a mapping; NaN or infinity in a numeric setting (a
YAML file, a hardware YAML, --set); nonsense numbers on the command line; a folder where a file
is expected; a serial port that cannot be opened; a servo that does not answer at start, or is
in Alert (virtual robots on real ptys: `--fault silent:4`, `--fault alert:5@0x24`); a board that
does not answer; a fault spec that names a fault twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

# (id, arguments, what stderr must contain); {d} is a folder of prepared files (below)
TABLE = [
    # YAML that is not UTF-8, or not a mapping
    ("yaml-not-utf8", "train {d}/latin1.yaml",
     "{d}/latin1.yaml: not UTF-8 text (byte 0xe9 at offset 16); save it as UTF-8"),
    ("dynamics-not-utf8", "excite --body sim:mujoco --dynamics {d}/latin1.yaml",
     "{d}/latin1.yaml: not UTF-8 text (byte 0xe9 at offset 16)"),
    ("hw-yaml-a-list", "excite --hw {d}/list.yaml",
     "{d}/list.yaml: top level must be a mapping, got list"),
    ("yaml-bad-syntax", "train {d}/broken.yaml",
     "{d}/broken.yaml: not valid YAML at line 2, column 1: expected ',' or ']'"),
    # NaN or infinity in a numeric setting
    ("yaml-nan", "train {d}/nan.yaml",
     "{d}/nan.yaml: 'agent.gamma' must be a finite number, got nan"),
    ("set-nan", "train --set env.sim.terrain.friction=nan",
     "'env.sim.terrain.friction' must be a finite number, got nan"),
    ("set-inf-in-a-list", "train --set evaluation.command=[0.3,inf,0]",
     "'evaluation.command[1]' must be a finite number, got inf"),
    ("hw-yaml-inf", "excite --hw {d}/hw_inf.yaml",
     "{d}/hw_inf.yaml: 'torque_constant_nm_per_a' must be a finite number, got inf"),
    ("set-not-yaml", "train --set agent.gamma=[1,",
     "--set agent.gamma=[1,: the value is not valid YAML"),
    # nonsense numbers on the command line
    ("check-duration-nan", "check servo_dog --duration nan",
     "argument --duration: expected a positive number of seconds, got 'nan'"),
    ("check-duration-negative", "check servo_dog --duration -1",
     "argument --duration: expected a positive number of seconds, got '-1'"),
    ("deploy-duration-zero", "deploy {d}/bundle --duration 0",
     "argument --duration: expected a positive number of seconds, got '0'"),
    ("deploy-command-two-numbers", "deploy {d}/bundle --command 1,2",
     "argument --command: expected VX,VY,YAW (three finite numbers: m/s, m/s, rad/s), got '1,2'"),
    ("deploy-command-nan", "deploy {d}/bundle --command nan,0,0",
     "argument --command: expected VX,VY,YAW"),
    ("eval-episodes-zero", "eval run --episodes 0",
     "argument --episodes: expected a whole number, 1 or more, got '0'"),
    ("eval-episodes-fraction", "eval run --episodes 2.5",
     "argument --episodes: expected a whole number, 1 or more, got '2.5'"),
    ("excite-duration-inf", "excite --duration inf",
     "argument --duration: expected a positive number of seconds, got 'inf'"),
    ("excite-amplitude-negative", "excite --amplitude -0.1",
     "argument --amplitude: expected a positive number, got '-0.1'"),
    ("excite-control-dt-zero", "excite --control-dt 0",
     "argument --control-dt: expected a positive number of seconds, got '0'"),
    ("excite-seed-negative", "excite --seed -1",
     "argument --seed: expected a whole number, 0 or more, got '-1'"),
    ("sysid-generations-zero", "sysid {d}/notes.txt --generations 0",
     "argument --generations: expected a whole number, 1 or more, got '0'"),
    ("sysid-workers-negative", "sysid {d}/notes.txt --workers -1",
     "argument --workers: expected a whole number, 0 or more, got '-1'"),
    ("sysid-max-latency-nan", "sysid {d}/notes.txt --max-latency nan",
     "argument --max-latency: expected a number, 0 or more, got 'nan'"),
    ("virtual-robot-baud-zero", "virtual-robot --baud 0",
     "argument --baud: expected a baud rate, a whole number above 0 (e.g. 1000000), got '0'"),
    ("virtual-robot-duration-nan", "virtual-robot --duration nan",
     "argument --duration: expected a positive number of seconds, got 'nan'"),
    # a folder (or a plain file) where the other is expected
    ("config-a-folder", "train {d}/folder.yaml",
     "{d}/folder.yaml: is a folder, expected a YAML file"),
    ("hw-yaml-a-folder", "excite --hw {d}/folder.yaml",
     "{d}/folder.yaml: is a folder, expected a YAML file"),
    ("dynamics-a-folder", "excite --body sim:mujoco --dynamics {d}/folder.yaml",
     "{d}/folder.yaml: is a folder, expected a YAML file"),
    ("log-a-folder", "logs inspect {d}/logs",
     "{d}/logs: is a folder; give episode log files (.gflog)"),
    ("replay-a-folder", "replay {d}/logs", "{d}/logs: is a folder; give episode log files"),
    ("sysid-out-a-folder", "sysid {d}/notes.txt --out {d}/logs",
     "--out {d}/logs: is a folder; give the dynamics file's name (e.g. {d}/logs/dynamics.yaml)"),
    ("bundle-a-file", "deploy {d}/notes.txt", "{d}/notes.txt: not a policy bundle"),
    ("log-dir-a-file", "excite --body sim:mujoco --duration 4 --log-dir {d}/notes.txt",
     "{d}/notes.txt: exists, and is not a folder"),
    # a serial port that cannot be opened
    ("port-missing", "excite --hw servo_dog_board --port {d}/ttyUSB9",
     "--port: cannot open serial port '{d}/ttyUSB9': no such device: is it plugged in and "
     "powered, and is the path right?"),
    ("port-of-the-yaml-missing", "excite --hw servo_dog_board",
     "servo_dog_board port (no --port given): cannot open serial port '/dev/ttyACM0'"),
    ("port-a-plain-file", "excite --hw servo_dog_board --port {d}/notes.txt",
     "cannot open serial port '{d}/notes.txt': not a serial device"),
    ("port-a-folder", "excite --hw servo_dog_board --port {d}/logs",
     "cannot open serial port '{d}/logs': is a folder, not a serial device"),
    ("imu-port-missing", "excite --hw servo_dog_dynamixel --port /dev/ptmx --imu-port "
     "{d}/ttyACM9", "--imu-port: cannot open serial port '{d}/ttyACM9': no such device"),
    ("noise-seed-on-hardware", "excite --hw servo_dog_board --noise-seed 1",
     "--noise-seed is for a simulated body (--body sim:ENGINE); real hardware has its own"),
    # the fault injector
    ("fault-twice", "virtual-robot --fault unplug:3@1,unplug:6@1",
     "--fault 'unplug:6@1': unplug is already given ('unplug:3@1'); each fault may appear once"),
    ("fault-time-nan", "virtual-robot --fault vanish:nan",
     "--fault 'vanish:nan': the time (s) must be a finite number, 0 or more, got 'nan'"),
    ("fault-no-such-servo", "virtual-robot --fault alert:99",
     "--fault alert:99: no servo 99 on this bus (ids 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)"),
    ("fault-servo-on-the-board", "virtual-robot --protocol board --fault silent:4",
     "--fault silent:4: a Dynamixel servo's fault; the board protocol has no servo ids"),
]

HW_YAML = """robot: servo_dog
protocol: board
port: /dev/ttyACM0
baud: 1000000
torque_constant_nm_per_a: .inf
joints:
"""


PREPARED = ("latin1.yaml", "list.yaml", "broken.yaml", "nan.yaml", "hw_inf.yaml", "folder.yaml",
            "logs", "notes.txt")


def prepare(d) -> None:
    (d / "latin1.yaml").write_bytes("env: {robot: caf\u00e9}\n".encode("latin-1"))
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "broken.yaml").write_text("agent: [1, 2\n")
    (d / "nan.yaml").write_text("agent:\n  gamma: .nan\n")
    from gaitforge.robots.spec import load_robot_spec

    joints = "".join(f"  - {{name: {j}}}\n" for j in load_robot_spec("servo_dog").joint_names)
    (d / "hw_inf.yaml").write_text(HW_YAML + joints)
    (d / "folder.yaml").mkdir()
    (d / "logs").mkdir()
    (d / "notes.txt").write_text("mine\n")


def gaitforge(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GAITFORGE_RUNS": str(cwd / "runs")}
    return subprocess.run([sys.executable, "-m", "gaitforge.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    prepare(d)
    return d


@pytest.fixture(scope="module")
def answers(folder):
    """Every row of TABLE, run at once (each in its own process)."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = {row[0]: pool.submit(gaitforge, row[1].format(d=folder).split(), folder)
                for row in TABLE}
    return {key: run.result() for key, run in runs.items()}


def assert_a_sentence(answer: subprocess.CompletedProcess, expected: str) -> None:
    err = answer.stderr
    assert "Traceback" not in err, err
    assert answer.returncode == 2, (answer.returncode, err)
    assert expected in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("gaitforge"), err


@pytest.mark.parametrize(("key", "args", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_is_a_sentence_and_exit_status_2(answers, folder, key, args, expected):
    assert_a_sentence(answers[key], expected.format(d=folder))


def test_nothing_was_made_from_bad_input(answers, folder):
    """No run folder, no log, no dynamics file: a refused command leaves nothing behind, and
    the user's files are as they were."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(PREPARED)
    assert not any((folder / "logs").iterdir()) and not any((folder / "folder.yaml").iterdir())
    assert (folder / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(("fault", "expected"), [
    ("silent:4", "the robot did not start: no reply from servo 4 on {port} (PING, 4 attempts): "
                 "check the power and the cable, that its id is 4, and that the bus runs at "
                 "1000000 baud"),
    ("alert:5@0x24", "the robot did not start: servo 5 on {port} is in Alert: Hardware Error "
                     "Status 0x24 (overheating, overload); remove the cause"),
])
def test_a_servo_that_fails_at_start_is_named(virtual_robot, tmp_path, fault, expected):
    """`excite --hw` over the pty of a virtual robot whose servo 4 never answers, or whose
    servo 5 is in Alert (raised one second after it serves: the command starts later).

    The virtual servos are threads of a process that a loaded 2-core machine can starve past
    the bus's 5 ms reply timeout (see tests/hw_drivers/conftest.py): then another servo is
    named, in a sentence all the same. Such a run is repeated, at most three times in all."""
    for _ in range(3):
        with virtual_robot("--protocol", "dynamixel", "--engine", "mujoco", "--fault", fault,
                           "--duration", "60") as (_, paths):
            time.sleep(1.2)
            answer = gaitforge(["excite", "--hw", "servo_dog_dynamixel", "--port",
                                paths["port"], "--imu-port", paths["imu_port"], "--duration",
                                "4", "--log-dir", str(tmp_path / "logs")], tmp_path)
        assert_a_sentence(answer, "the robot did not start: ")
        if expected.format(port=paths["port"]) in answer.stderr:
            break
    assert_a_sentence(answer, expected.format(port=paths["port"]))


def test_a_board_that_does_not_answer_is_named(tmp_path):
    """A pty with nothing behind it: the CONFIG is written, no CONFIG_ACK ever comes."""
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        answer = gaitforge(["excite", "--hw", "servo_dog_board", "--port", port,
                            "--duration", "4", "--log-dir", str(tmp_path / "logs")], tmp_path)
    finally:
        os.close(master)
        os.close(slave)
    assert_a_sentence(answer, f"the robot did not start: the board on {port} did not answer "
                              "(no CONFIG_ACK for seq 1 within 0.1 s): check its power and "
                              "cable, the port, and that it runs at 1000000 baud")


def test_main_answers_a_refused_argument_with_2_and_lets_a_bug_raise(capsys, monkeypatch):
    """In process too: argparse's refusal is a return value (2), not SystemExit; an error no
    user can cause (a bug) keeps its traceback."""
    from gaitforge.cli import cmd_envs, main

    assert main(["check", "servo_dog", "--duration", "nan"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "gaitforge check: error: argument --duration: expected a positive number of seconds, "
        "got 'nan'", "(`gaitforge check --help` lists the options)"]

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cmd_envs, "run", broken)  # register() takes it when main builds
    with pytest.raises(KeyError, match="a bug"):
        main(["envs"])


def test_a_reader_that_goes_away_ends_the_verb_without_a_traceback():
    """`gaitforge envs | head -0`: stdout closed before the verb writes (a bench that stopped
    reading) is exit status 1 and nothing on stderr but TensorFlow's own lines."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "gaitforge.cli", "envs"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the child has imported anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_path_problems_name_the_path():
    import errno

    from gaitforge.cli.user_errors import user_error_message

    err = IsADirectoryError(errno.EISDIR, "Is a directory", "/data/bundle/policy.tflite")
    assert user_error_message(err) == \
        "/data/bundle/policy.tflite: is a folder, where a file is expected"
    err = PermissionError(errno.EACCES, "Permission denied", "/srv/logs")
    assert user_error_message(err) == "/srv/logs: permission denied (check its owner and mode)"
    assert user_error_message(OSError("no path")) is None  # not about a path: a bug
    assert user_error_message(RuntimeError("a bug")) is None
    from gaitforge.agents.ray_trainer import CollectorsSpent  # Ray collectors that keep failing

    assert user_error_message(CollectorsSpent("ray: ... is spent")) == "ray: ... is spent"


def test_plot_reads_metrics_cut_short_and_names_a_bad_line(tmp_path):
    """A run killed while writing metrics.jsonl leaves a torn last line: the rest is plotted.
    A bad line before the end is named (file and line), not a JSONDecodeError."""
    from gaitforge.cli.cmd_plot import read_jsonl
    from gaitforge.robots.configio import ConfigError

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ConfigError) as err:
        read_jsonl(path)
    assert str(err.value) == f"{path}: line 2 is not a JSON record; remove it to plot the rest"
    assert read_jsonl(tmp_path / "none.jsonl") == []


def test_a_duration_shorter_than_one_tick_stands_one_tick(capsys):
    """`check --duration 0.001` (below one 20 ms control period) used to crash."""
    from gaitforge.cli import main

    assert main(["check", "servo_dog", "--duration", "0.001"]) == 0
    assert "fell          no" in capsys.readouterr().out


def test_hardware_errors_print_the_bodys_note_or_their_own_message():
    from gaitforge.cli.user_errors import user_error_message
    from gaitforge.hw_drivers.body import HardwareReadError
    from gaitforge.hw_drivers.dynamixel import Instruction
    from gaitforge.hw_drivers.dynamixel_bus import DxlTimeout
    from gaitforge.hw_drivers.transport import TransportError

    err = DxlTimeout([4], Instruction.PING, 4)
    assert user_error_message(err) == "no reply from servo 4 to PING after 4 attempt(s)"
    err.add_note("the robot did not start: no reply from servo 4 on /dev/ttyUSB0 ...")
    assert user_error_message(err) == err.__notes__[-1]  # HardwareBody's sentence
    assert user_error_message(TransportError("serial port 'x' vanished")) == \
        "serial port 'x' vanished"
    assert user_error_message(HardwareReadError("servo 5: SYNC_READ -> Alert")) == \
        "no valid state from the robot at start: servo 5: SYNC_READ -> Alert"
