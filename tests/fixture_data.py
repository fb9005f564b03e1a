"""Real data vendored under ``tests/fixtures/`` (sources and licences in its README).

Large files are stored xz-compressed; :func:`fixture_path` hands out a plain copy, unpacked once per
machine into the temp folder, so tests open them like any file. Nothing here reads the reference data folder beside the repository.
"""

from __future__ import annotations

import hashlib
import lzma
import tarfile
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_path(relative: str) -> Path:
    """Path of ``tests/fixtures/<relative>``, unpacking ``<relative>.xz`` when only that is stored."""
    plain = FIXTURES / relative
    if plain.is_file():
        return plain
    packed = plain.with_name(plain.name + ".xz")
    if not packed.is_file():
        raise FileNotFoundError(f"fixture {relative} is not in {FIXTURES} (nor as {packed.name})")
    data = packed.read_bytes()
    # keyed by content, so an updated fixture never reads a stale unpacked copy
    out = Path(tempfile.gettempdir()) / "ingress-patrol-fixtures" / hashlib.sha1(data).hexdigest()[:16] / plain.name
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(lzma.decompress(data))
        tmp.replace(out)
    return out


def log_path(name: str) -> Path:
    """A vendored access-log file (``tests/fixtures/logs/``)."""
    return fixture_path(f"logs/{name}")


def nab_dir() -> Path:
    """A small NAB tree (``tests/fixtures/nab.tar.xz``: three files, their labels, the profiles, NAB's
    published ``numenta`` and ``windowedGaussian`` outputs and official per-file scores), unpacked once."""
    packed = FIXTURES / "nab.tar.xz"
    data = packed.read_bytes()
    root = Path(tempfile.gettempdir()) / "ingress-patrol-fixtures" / hashlib.sha1(data).hexdigest()[:16]
    if not (root / "nab" / "results" / "expected_per_file.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(packed, "r:xz") as tar:
            tar.extractall(root, filter="data")
    return root / "nab"
