"""The virtual-device server's pieces: fault specs, byte faults, wire time, the pty port."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gaitforge.hw_drivers.virtual import (
    FaultSpec,
    PtyPort,
    apply_byte_faults,
    parse_faults,
    wire_time_s,
)


def test_wire_time_is_ten_bits_a_byte():
    # 352 bytes at 1 Mbps: 3.52 ms (284 Hz); at 4 Mbps 0.88 ms (1136 Hz)
    assert wire_time_s(352, 1_000_000) == pytest.approx(3.52e-3)
    assert 1 / wire_time_s(352, 4_000_000) == pytest.approx(1136.36, abs=0.01)


def test_parse_faults():
    f = parse_faults("corrupt:0.01, late:0.5@12, unplug:3@1.5, silent:4, alert:5@0x20")
    assert f.corrupt == 0.01 and f.late == 0.5 and f.late_ms == 12.0
    assert f.unplug_s == 3.0 and f.replug_after_s == 1.5
    assert f.extra == {"silent": (4, None), "alert": (5, 0x20)}
    assert parse_faults(None) == FaultSpec()
    with pytest.raises(ValueError, match="'corrupt:2': probability outside"):
        parse_faults("corrupt:2")
    with pytest.raises(ValueError, match="'wobble:1': unknown fault"):
        parse_faults("wobble:1")
    with pytest.raises(ValueError, match="'drop:x'"):
        parse_faults("drop:x")


@pytest.mark.parametrize(("spec", "item", "first"), [
    ("unplug:3@1,unplug:6@1", "unplug:6@1", "unplug:3@1"),  # kept only the last, before
    ("silent:4, silent:5", "silent:5", "silent:4"),
    ("alert:5@0x20,alert:5@0x04", "alert:5@0x04", "alert:5@0x20"),
    ("drop:0.1,corrupt:0.2,drop:0.3", "drop:0.3", "drop:0.1"),
    ("late:0.5@10,late:0.5@20", "late:0.5@20", "late:0.5@10"),
    ("vanish:2,vanish:2", "vanish:2", "vanish:2"),
])
def test_a_fault_given_twice_is_refused_naming_both(spec, item, first):
    """The fault injector means what it says: a FaultSpec holds one of each fault, so a spec
    that names one twice is refused, not silently cut to its last item."""
    name = item.split(":")[0]
    with pytest.raises(ValueError) as err:
        parse_faults(spec)
    assert str(err.value) == (f"--fault '{item}': {name} is already given ('{first}'); each "
                              "fault may appear once")


@pytest.mark.parametrize(("spec", "message"), [
    ("vanish:nan", "'vanish:nan': the time (s) must be a finite number, 0 or more, got 'nan'"),
    ("unplug:-1", "'unplug:-1': the time (s) must be a finite number, 0 or more, got '-1'"),
    ("unplug:3@inf", "the time unplugged (s) must be a finite number, 0 or more, got 'inf'"),
    ("late:0.1@nan", "the delay (ms) must be a finite number, 0 or more, got 'nan'"),
    ("drop:nan", "'drop:nan': probability outside [0, 1]"),
    ("silent:300", "'silent:300': servo id 300 outside 0..252"),
    ("alert:5@0x100", "'alert:5@0x100': Hardware Error Status bits 0x100 outside 0x01..0xFF"),
    ("alert:5@0", "Hardware Error Status bits 0x0 outside 0x01..0xFF"),
])
def test_fault_numbers_are_finite_and_in_range(spec, message):
    with pytest.raises(ValueError) as err:
        parse_faults(spec)
    assert message in str(err.value)


def test_byte_faults_each_do_what_they_say():
    rng, reply = np.random.default_rng(0), bytes(range(1, 21))
    counts: dict[str, int] = {}
    assert apply_byte_faults(reply, FaultSpec(drop=1.0), rng, counts) == (b"", 0.0)
    out, _ = apply_byte_faults(reply, FaultSpec(corrupt=1.0), rng, counts)
    assert len(out) == 20 and sum(a != b for a, b in zip(out, reply, strict=True)) == 1
    flipped = int.from_bytes(out, "big") ^ int.from_bytes(reply, "big")
    assert bin(flipped).count("1") == 1  # exactly one bit
    out, _ = apply_byte_faults(reply, FaultSpec(bad_crc=1.0), rng, counts)
    assert out[:-1] == reply[:-1] and out[-1] != reply[-1]
    out, _ = apply_byte_faults(reply, FaultSpec(truncate=1.0), rng, counts)
    assert 1 <= len(out) < 20 and reply.startswith(out)
    out, _ = apply_byte_faults(reply, FaultSpec(garbage=1.0), rng, counts)
    assert out.endswith(reply) and 1 <= len(out) - 20 <= 8
    out, delay = apply_byte_faults(reply, FaultSpec(late=1.0, late_ms=7.0), rng, counts)
    assert out == reply and delay == pytest.approx(0.007)
    assert counts == {"drop": 1, "corrupt": 1, "bad_crc": 1, "truncate": 1, "garbage": 1,
                      "late": 1}
    assert apply_byte_faults(reply, FaultSpec(), rng, counts) == (reply, 0.0)


def test_pty_port_unplugs_and_comes_back_at_the_same_path():
    port = PtyPort()
    try:
        fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"ping")
        assert os.read(port.master, 4) == b"ping"
        port.unplug()
        assert not os.path.exists(port.path)
        with pytest.raises(OSError):
            os.write(fd, b"x")
            os.read(fd, 1)
        os.close(fd)
        port.open()
        assert os.path.exists(port.path)
        fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"back")
        assert os.read(port.master, 4) == b"back"
        os.close(fd)
    finally:
        port.close()
    assert not os.path.exists(port.path)
