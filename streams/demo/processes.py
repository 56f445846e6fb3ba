"""Child processes of the demo (workers, the trainer), each logging to a file in the run folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Children:
    """Starts ``lettingo`` subcommands as children and stops them all (SIGTERM, then SIGKILL) on exit."""

    run_dir: Path
    env: dict[str, str]
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        log = self.run_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lettingo.cli.main", *args],
                env={**os.environ, **self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.started.append(child)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.started if not c.alive()]

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for child in self.started:
            if child.alive():
                os.killpg(child.proc.pid, signal.SIGTERM)
        for child in self.started:
            try:
                child.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
