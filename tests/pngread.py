"""Read the pixels of a PNG (8-bit RGB or RGBA, not interlaced: what rsvg-convert
writes), so tests can look at what an SVG renders to."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8


class Image:
    """width x height pixels, each an (r, g, b) tuple (alpha composed over white)."""

    def __init__(self, width: int, height: int, rows: list[bytes], channels: int):
        self.width, self.height = width, height
        self._rows, self._channels = rows, channels

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        c = self._channels
        px = self._rows[y][x * c:(x + 1) * c]
        if c == 3:
            return px[0], px[1], px[2]
        a = px[3]
        return tuple((v * a + 255 * (255 - a)) // 255 for v in px[:3])

    def is_ink(self, x: int, y: int, threshold: int = 160) -> bool:
        """Dark enough to be text (the SVG's text is near-black on white)."""
        return max(self.pixel(x, y)) < threshold


def read(path) -> Image:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path}: not a PNG")
    pos, idat, head = len(SIGNATURE), b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = head
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour})")
    return Image(width, height, _unfilter(zlib.decompress(idat), width, height,
                                          CHANNELS[colour]), CHANNELS[colour])


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    """Undo the per-row filters (PNG spec, section 9)."""
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = prev[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return rows
