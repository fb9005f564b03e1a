"""Shared fixtures: a real Tansu broker and a real redis-server on free loopback ports.

A missing service fails the run loudly; nothing here skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from patrol.sim.broker import EmbeddedBroker
from patrol.sim.redis_server import LocalRedis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka():
    """A Tansu broker for the whole session; tests use their own topic names or the default ones."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_server():
    with LocalRedis() as r:
        yield r


@pytest.fixture
def fresh_kafka():
    """A broker of its own, for tests that need the default topic names untouched."""
    with EmbeddedBroker() as broker:
        yield broker


def run_patrol(*args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False,
               input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real ``patrol`` console script (as installed in the venv)."""
    exe = Path(sys.executable).with_name("patrol")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"patrol {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc
