"""A throwaway local ``redis-server`` on a free loopback port (demo and tests).

Production sets ``PATROL_REDIS__URL``; this module is only for the embedded default.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .broker import free_port, wait_for_port


class RedisStartError(RuntimeError):
    """redis-server is missing or did not start; the message says how to fix it."""


INSTALL_HINT = ("redis-server is not installed. As root: `apt-get install -y redis-server` "
                "(`make test` does this for you); otherwise ask an administrator, or set PATROL_REDIS__URL.")


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None)


@dataclass
class LocalRedis:
    """``with LocalRedis() as r: r.url`` — an in-memory redis-server (no persistence) on 127.0.0.1."""

    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _dir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        binary = redis_server_binary()
        if binary is None:
            raise RedisStartError(INSTALL_HINT)
        if self.port == 0:
            self.port = free_port(self.host)
        self._dir = tempfile.TemporaryDirectory(prefix="patrol-redis-")
        cmd = [binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
               "--dir", self._dir.name, "--protected-mode", "no", "--loglevel", "warning"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_for_port(self.host, self.port, timeout, self._proc):
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
            self.stop()
            raise RedisStartError(f"redis-server did not listen on {self.host}:{self.port} within {timeout}s {err}")
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
