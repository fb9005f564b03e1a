"""Child processes the demo runs: generator and stream workers, each with its own log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from patrol.streams.config import Settings


@dataclass
class Stage:
    """One ``patrol`` subcommand run as a child process (so a crash in one stage is visible, not fatal)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    stopping: bool = False

    def start(self) -> None:
        fd, name = tempfile.mkstemp(prefix=f"patrol-{self.name}-", suffix=".log")
        self.log_path = Path(name)
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen([sys.executable, "-m", "patrol.cli.app", *self.argv], stdout=fd, stderr=fd,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        os.close(fd)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def failed(self) -> bool:
        rc = self.returncode
        return rc is not None and rc != 0 and not self.stopping

    def state(self) -> str:
        rc = self.returncode
        if rc is None:
            return "[green]running"
        return "finished" if rc == 0 else f"[red]exited {rc}"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (workers flush and commit), then SIGKILL after ``timeout``."""
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _env(s: Settings) -> dict[str, str]:
    env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers or ""}
    if s.redis.url is not None:
        env["PATROL_REDIS__URL"] = s.redis.url.get_secret_value()
    return env


def demo_stages(s: Settings, rate: float, speedup: float, start: str | None = None,
                truth: str | None = None) -> list[Stage]:
    """The three stages (generator, preagg, detect) as child processes on the demo's broker and topics."""
    env = _env(s)
    return [
        Stage("generator", ["generate", "--bootstrap", s.kafka.bootstrap_servers, "--topic", s.topics.logs,
                            "--rate", str(rate), "--speedup", str(speedup), "--incidents", "default",
                            *(["--start", start] if start else []),
                            *(["--ground-truth", truth] if truth else [])], env),
        Stage("preagg", ["run", "preagg", "--bootstrap", s.kafka.bootstrap_servers], env),
        Stage("detect", ["run", "detect", "--bootstrap", s.kafka.bootstrap_servers], env),
    ]
