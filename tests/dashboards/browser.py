"""Headless Chromium (Debian's ``chromium`` package, deploy/local/install-system.sh) without
network access for the page, and a small PNG reader (no imaging library needed).

Network: every host name resolves to nothing (``--host-resolver-rules``) and every request
goes to a proxy on the discard port where nothing listens, so a page that tried to load
anything from the network would lose it; background services of the browser are switched off.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

CHROMIUM_TIMEOUT_S = 180  # generous: the machine is shared
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run",
          "--disable-extensions", "--disable-default-apps", "--mute-audio",
          "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
          "--virtual-time-budget=15000")


def chromium(page: Path, profile_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Chromium headless on ``page`` (a local file) with a fresh ``profile_dir``.

    Raises AssertionError when the browser is not installed or exits non-zero."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (deploy/local/install-system.sh installs it)"
    profile_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([binary, *_FLAGS, f"--user-data-dir={profile_dir}", *args,
                             page.resolve().as_uri()], capture_output=True, text=True,
                            timeout=CHROMIUM_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)`` of an 8-bit RGB or RGBA non-interlaced PNG; each row holds the
    unfiltered bytes (3 or 4 per pixel). Raises AssertionError for anything else."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows
