"""Fuzz the board protocol: 1e5 random and mutated frames into the host decoder and 1e5 into
VirtualBoard.feed. Never an exception; never a frame accepted whose CRC is wrong.

The oracle is independent of the code under test: a textbook COBS decoder and binascii's
CRC-16 decide which bodies in an input are good; every accepted message must re-encode to one
of them. Inputs come from a seeded generator (reproducible; the seed is in the assertion
message), in six kinds: random bytes, random bytes with many zeros, valid frames with bytes
flipped / inserted / deleted / truncated, two frames spliced, a mutated body re-framed with
valid COBS (only the CRC guards it), and a mutated body with its CRC fixed (the parsers guard it).
"""

from __future__ import annotations

import binascii
import random
import struct

from gaitforge.hw_drivers.board import VirtualBoard
from gaitforge.hw_drivers.board_codec import (
    Command,
    Config,
    ConfigAck,
    Error,
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    State,
    Status,
    encode,
    encode_body,
)
from gaitforge.hw_drivers.board_framing import cobs_encode
from gaitforge.robots.types import CommandMode

N_INPUTS = 100_000
SEED = 20240605


def ref_cobs_decode(enc: bytes) -> bytes | None:
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        i += 1
        if code == 0 or i + code - 1 > len(enc):
            return None
        for _ in range(code - 1):
            out.append(enc[i])
            i += 1
        if code < 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


def good_bodies(data: bytes) -> tuple[list[bytes], int]:
    """Bodies with a correct CRC among the frames of `data` (as delimited by 0x00), and the
    number of frames whose COBS and size are fine but whose CRC is wrong."""
    good, bad_crc = [], 0
    for segment in data.split(b"\x00"):
        if not segment or len(segment) > 525:
            continue
        body = ref_cobs_decode(segment)
        if body is not None and 6 <= len(body) <= 522:
            if binascii.crc_hqx(body[:-2], 0xFFFF) == struct.unpack("<H", body[-2:])[0]:
                good.append(body)
            else:
                bad_crc += 1
    return good, bad_crc


def corpus(rng: random.Random) -> list:
    msgs = [Heartbeat(1), Config(2, 12, 1000, 0, (0.1,) * 12), ConfigAck(3, 2, 12, 1000, 0),
            Error(4, ErrorCode.BAD_VALUE, 2, 7, 16)]
    for seq, n in enumerate((1, 3, 12, 12, 32), start=5):
        pos = tuple(rng.uniform(-3, 3) for _ in range(n))
        msgs.append(Command(seq, rng.choice(list(CommandMode)), pos,
                            kp_nm_per_rad=(4.0,) * n if seq % 2 else None,
                            kd_nm_s_per_rad=(0.1,) * n, torque_ff_nm=pos if seq % 3 else None))
        msgs.append(State(seq, 10**6 * seq, seq, seq, Status.CONFIGURED, CommandMode.POSITION, 0,
                          0, 0, (1.0, 0.0, 0.0, 0.0), (0.0,) * 3, (0.0, 0.0, 9.81), pos, pos, pos))
    return msgs


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(i, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 4))
        elif op == 3:
            del buf[i : i + rng.randint(1, 4)]
        else:
            buf = buf[:i]
    return bytes(buf)


def reframe(body: bytes, fix_crc: bool) -> bytes:
    if fix_crc and len(body) >= 2:
        body = body[:-2] + struct.pack("<H", binascii.crc_hqx(body[:-2], 0xFFFF))
    return b"\x00" + cobs_encode(body) + b"\x00"


def inputs(seed: int, count: int, host_only: bool = False):
    rng = random.Random(seed)
    msgs = [m for m in corpus(rng) if not host_only or isinstance(m, Heartbeat | Command | Config)]
    frames = [encode(m) for m in msgs]
    bodies = [encode_body(m) for m in msgs]
    for k in range(count):
        kind = k % 6
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 80))
        elif kind == 1:
            yield bytes(rng.choice((0, 0, rng.randrange(256))) for _ in range(rng.randint(0, 40)))
        elif kind == 2:
            yield mutate(rng, rng.choice(frames))
        elif kind == 3:
            a, b = rng.choice(frames), rng.choice(frames)
            yield a[: rng.randrange(len(a))] + b[rng.randrange(len(b)) :]
        else:
            yield reframe(mutate(rng, rng.choice(bodies)), fix_crc=kind == 5)


def test_host_decoder_never_crashes_and_never_accepts_a_bad_crc():
    decoder = FrameDecoder()
    accepted = rejected = 0
    for k, data in enumerate(inputs(SEED, N_INPUTS)):
        data = b"\x00" + data + b"\x00"  # every frame of this input ends inside it
        crc_before = decoder.crc_errors
        out = decoder.feed_detailed(data)
        good, bad_crc = good_bodies(data)
        msgs = [m for m in out if not isinstance(m, Exception)]
        rejected += len(out) - len(msgs)
        assert len(out) <= len(good), (SEED, k, data.hex())
        assert decoder.crc_errors - crc_before == bad_crc, (SEED, k, data.hex())
        for msg in msgs:
            assert encode_body(msg) in good, (SEED, k, data.hex())
        accepted += len(msgs)
    # the generator exercised every path
    assert accepted > 2_000 and rejected > 8_000 and decoder.crc_errors > 15_000
    assert decoder.bad_frames > 100_000


def test_virtual_board_never_crashes_and_applies_only_good_commands():
    board = VirtualBoard(12)
    config = encode(Config(0, 12, 10_000, 100, (0.1,) * 12))
    host = FrameDecoder()
    now = 0.0
    for k, data in enumerate(inputs(SEED + 1, N_INPUTS, host_only=True)):
        if k % 1000 == 0:
            board.feed(config, now)  # re-arm now and then, so commands get applied
        data = b"\x00" + data + b"\x00"
        applied = board.commands_applied
        replies = board.feed(data, now) + board.poll(now)
        now += 1e-4
        replies_ok = host.frames_ok
        host.feed(b"".join(replies))
        assert host.frames_ok - replies_ok == len(replies), (SEED + 1, k)  # replies well formed
        if board.commands_applied != applied:
            assert encode_body(board.last_command) in good_bodies(data)[0], (SEED + 1, k)
        board.applied_command(now)
    assert host.crc_errors == 0 and host.bad_frames == 0
    assert board.commands_applied > 500 and board.rx_crc_errors > 15_000
