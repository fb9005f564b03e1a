"""Tagged state sections: one series' packed state as ``tag -> bytes``.

Each section is ``len(tag)`` (1 byte), the tag (ASCII), the payload length (4 bytes, little endian) and
the payload (the part's fields in declaration order, :meth:`Detector._pack`). A reader takes the
sections it knows by tag and ignores the others, so an ensemble that gains a member loads states
written before it (the new member starts afresh) and one that loses a member loads states that still
carry it.

Examples
--------
>>> buf = pack([("spike", b"\\x01\\x02"), ("cusum", b"")])
>>> unpack(buf)
{'spike': b'\\x01\\x02', 'cusum': b''}
>>> header("spike", 2) + b"\\x01\\x02" + header("cusum", 0) == buf
True
"""
from __future__ import annotations

import struct

_LEN = struct.Struct("<I")


def header(tag: str, size: int) -> bytes:
    """The bytes in front of a section of ``size`` payload bytes."""
    t = tag.encode("ascii")
    if not 0 < len(t) < 256:
        raise ValueError(f"section tag must be 1..255 ASCII characters: {tag!r}")
    return bytes([len(t)]) + t + _LEN.pack(size)


def pack(sections) -> bytes:
    """``[(tag, payload), ...]`` -> bytes."""
    return b"".join(header(tag, len(data)) + data for tag, data in sections)


def unpack(buf: bytes) -> dict[str, bytes]:
    """bytes -> ``{tag: payload}``; raises ``ValueError`` on a truncated or malformed buffer."""
    out, pos, end = {}, 0, len(buf)
    while pos < end:
        n = buf[pos]
        if n == 0 or pos + 1 + n + 4 > end:
            raise ValueError("state sections are malformed (bad tag length)")
        tag = bytes(buf[pos + 1:pos + 1 + n]).decode("ascii", errors="replace")
        (size,) = _LEN.unpack_from(buf, pos + 1 + n)
        start = pos + 1 + n + 4
        if start + size > end:
            raise ValueError(f"state section {tag!r} is truncated")
        if tag in out:
            raise ValueError(f"state section {tag!r} appears twice")
        out[tag] = bytes(buf[start:start + size])
        pos = start + size
    return out
