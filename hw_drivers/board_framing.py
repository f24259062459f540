"""Board protocol framing: CRC, COBS and delimiters (docs/board_protocol.md, section 2).

Wire frame: `00 | COBS(body) | 00`; body = version..payload | crc u16, little-endian, with
CRC-16/CCITT-FALSE over version..payload. This layer knows nothing of message types (those are
`board_codec`): `seal(data)` appends the CRC, `frame(body)` puts a body on the wire,
`FrameSplitter` cuts a byte stream at the 0x00 delimiters without ever buffering more than
MAX_COBS_BYTES, and `unframe(segment)` checks one segment's COBS, size and CRC and gives back
version..payload. Whatever fails here is dropped without a reply: nothing in it can be trusted.
"""

from __future__ import annotations

import binascii
import struct

MIN_BODY_BYTES = 6  # header (4) + crc (2)
# The largest payload is a 32-joint COMMAND with kp, kd and torque: 4 + 4 * 4 * 32 = 516 bytes
# (board_codec.MAX_JOINTS; a test checks the two agree).
MAX_PAYLOAD_BYTES = 516
MAX_BODY_BYTES = 4 + MAX_PAYLOAD_BYTES + 2  # 522
MAX_COBS_BYTES = MAX_BODY_BYTES + 3  # one COBS code byte per 254 bytes: 525

_CRC = struct.Struct("<H")


class CobsError(ValueError):
    """Bytes that are not a valid COBS encoding."""


class FrameError(ValueError):
    """The bytes between two delimiters are not a frame (COBS, size). Dropped, no reply."""


class CrcError(FrameError):
    """The CRC does not match. Dropped, no reply: nothing in the frame can be trusted."""


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out)."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result holds no 0x00 (canonical form)."""
    out = bytearray()
    parts = bytes(data).split(b"\x00")
    for i, part in enumerate(parts):
        full_block = False
        while len(part) >= 254:
            out.append(0xFF)
            out += part[:254]
            part = part[254:]
            full_block = True
        if part or not full_block or i < len(parts) - 1:
            out.append(len(part) + 1)
            out += part
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; raises CobsError on a zero byte or a block past the end."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise CobsError(f"bad COBS code {code} at offset {i} of {n}")
        block = data[i + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside a COBS block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def seal(data: bytes) -> bytes:
    """version..payload followed by its CRC (low byte first): the body that COBS encodes."""
    return data + _CRC.pack(crc16_ccitt(data))


def frame(body: bytes) -> bytes:
    """A body on the wire: 00 COBS(body) 00."""
    return b"\x00" + cobs_encode(body) + b"\x00"


def unframe(segment: bytes) -> bytes:
    """The bytes between two delimiters -> version..payload (CRC checked and removed);
    FrameError (COBS, size) or CrcError."""
    if len(segment) > MAX_COBS_BYTES:
        raise FrameError(f"frame of {len(segment)} bytes exceeds {MAX_COBS_BYTES}")
    try:
        body = cobs_decode(segment)
    except CobsError as err:
        raise FrameError(str(err)) from err
    if not MIN_BODY_BYTES <= len(body) <= MAX_BODY_BYTES:
        raise FrameError(f"body of {len(body)} bytes outside [{MIN_BODY_BYTES}, {MAX_BODY_BYTES}]")
    data = body[:-2]
    if crc16_ccitt(data) != _CRC.unpack_from(body, len(data))[0]:
        raise CrcError("CRC mismatch")
    return data


class FrameSplitter:
    """A byte stream cut at every 0x00 into the segments between delimiters, in any chunking.

    `feed(data)` returns each completed segment; a segment that grew past MAX_COBS_BYTES is
    discarded up to its closing 0x00 and comes back as None (one dropped frame). Empty segments
    (stray zeros) come back as b"": the caller ignores them.
    """

    def __init__(self):
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        data = bytes(data)
        start = 0
        while True:
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                if len(self._buf) + len(chunk) > MAX_COBS_BYTES:
                    self._overflow = True
                    self._buf.clear()
                else:
                    self._buf += chunk
            if end < 0:
                return out
            out.append(None if self._overflow else bytes(self._buf))
            self._buf.clear()
            self._overflow = False
            start = end + 1
