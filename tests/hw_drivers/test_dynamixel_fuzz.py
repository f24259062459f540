"""Fuzz: 1e5 random and mutated frames into the Dynamixel decoder and the virtual servo chain.

A seeded numpy RNG (not hypothesis: 1e5 examples must run in seconds) draws either random bytes
or a valid frame mutated by bit flips, truncation, insertion, duplication or splicing with a
second frame. Both consumers see one continuous stream. The contract: never an exception, and
every accepted packet came from wire bytes whose CRC verifies; every chain reply is a valid
status frame.
"""

from __future__ import annotations

import numpy as np

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import Instruction, PacketDecoder, crc16
from gaitforge.hw_drivers.virtual_dynamixel import VirtualServoChain

N_FRAMES = 100_000
IDS = list(range(1, 13))


def seed_frames(rng: np.random.Generator) -> list[bytes]:
    """Valid frames of every kind, some with stuffing, some aimed at servos on the chain."""
    frames = [
        dxl.ping(1), dxl.ping(0xFE), dxl.reboot(3), dxl.read(2, CT.PRESENT_POSITION, 4),
        dxl.read(5, 0, 148), dxl.write(4, CT.TORQUE_ENABLE, b"\x01"),
        dxl.write(6, CT.OPERATING_MODE, b"\x04"), dxl.write(7, CT.BUS_WATCHDOG, b"\x02"),
        dxl.write(1, 224, bytes.fromhex("ff ff fd 00")),
        dxl.sync_read(CT.PRESENT_CURRENT, 10, IDS),
        dxl.sync_write(CT.GOAL_POSITION, 4, {i: (2048 + i).to_bytes(4, "little") for i in IDS}),
        dxl.bulk_read([(1, 132, 4), (9, 126, 2), (12, 0, 3)]),
        dxl.status(3, 0x80, bytes.fromhex("ff ff fd 01")), dxl.encode_packet(8, 0x7A, b"\x00"),
    ]  # fmt: skip
    for _ in range(50):
        params = rng.choice(np.array([0x00, 0xFD, 0xFF, 0x55, 0x01], np.uint8), rng.integers(0, 24))
        dxl_id, instruction = int(rng.integers(0, 13)), int(rng.integers(0, 256))
        frames.append(dxl.encode_packet(dxl_id, instruction, params))
    return frames


def mutate(rng: np.random.Generator, frame: bytes, frames: list[bytes]) -> bytes:
    buf = bytearray(frame)
    kind = rng.integers(0, 6)
    if kind == 0:  # bit flips
        for _ in range(rng.integers(1, 4)):
            buf[rng.integers(0, len(buf))] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncation
        del buf[rng.integers(0, len(buf)) :]
    elif kind == 2:  # insertion
        at = int(rng.integers(0, len(buf) + 1))
        buf[at:at] = rng.bytes(int(rng.integers(1, 6)))
    elif kind == 3:  # duplication of a slice
        a = int(rng.integers(0, len(buf)))
        b = int(rng.integers(a, len(buf) + 1))
        buf[b:b] = buf[a:b]
    elif kind == 4:  # splice with another frame
        other = frames[int(rng.integers(0, len(frames)))]
        buf = buf[: rng.integers(0, len(buf) + 1)] + other[rng.integers(0, len(other)) :]
    else:  # a byte overwritten with a protocol-significant value
        buf[rng.integers(0, len(buf))] = int(rng.choice([0x00, 0xFD, 0xFE, 0xFF]))
    return bytes(buf)


def assert_genuine(pkt: dxl.Packet) -> None:
    raw = pkt.raw
    assert raw[:4] == dxl.HEADER and raw[4] == pkt.dxl_id
    assert raw[5] | raw[6] << 8 == len(raw) - 7
    assert crc16(raw[:-2]) == raw[-2] | raw[-1] << 8
    assert PacketDecoder().feed(pkt.encode()) == [pkt]


def test_fuzz_decoder_and_chain_never_crash_nor_accept_a_bad_crc():
    rng = np.random.default_rng(20240605)
    frames = seed_frames(rng)
    decoder = PacketDecoder()
    chain = VirtualServoChain(IDS)
    reply_decoder = PacketDecoder()
    accepted = replies = 0
    for k in range(N_FRAMES):
        if rng.random() < 0.3:
            data = rng.bytes(int(rng.integers(0, 40)))
        else:
            data = mutate(rng, frames[int(rng.integers(0, len(frames)))], frames)
        for pkt in decoder.feed(data):
            assert_genuine(pkt)
            accepted += 1
        for reply in chain.feed(data, now_s=k * 1e-3):
            (status,) = reply_decoder.feed(reply)
            assert status.instruction == Instruction.STATUS and status.dxl_id in IDS
            replies += 1
        if k % 1000 == 0:  # a clean frame now and then keeps both ends in step
            decoder.reset()
            chain.feed(dxl.write(0xFE, CT.TORQUE_ENABLE, b"\x00"), now_s=k * 1e-3)
    assert reply_decoder.crc_errors == 0 and reply_decoder.garbage_bytes == 0
    # the stream really exercised both paths
    assert accepted > 4_000 and replies > 20_000  # seed 20240605: 8773 and 46581
    assert decoder.crc_errors > 20_000 and chain.crc_errors > 20_000  # 40334 and 40472
    assert all(len(chain.table(i).mem) == 148 for i in IDS)
