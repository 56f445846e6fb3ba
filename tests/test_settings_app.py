"""The worker's app is built from the settings its entry point passes: importing ``streams.app`` reads no setting
and creates nothing, and ``configure`` wires one runtime into every agent and view."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO


def python(code: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETTINGO_")}
    environ |= {"LETTINGO_HOME": str(home), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=300,
    )


def test_importing_the_app_module_reads_no_setting_and_creates_nothing(tmp_path: Path) -> None:
    # settings that would refuse to build: an import that read them would fail
    done = python(
        """
        import sys
        import streams.app
        assert "streams.agents" not in sys.modules
        print("imported")
        """,
        tmp_path,
        LETTINGO_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
    )
    assert done.returncode == 0, done.stderr
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_configure_builds_the_app_from_the_given_settings_and_shares_one_runtime(tmp_path: Path) -> None:
    done = python(
        f"""
        from streams.app import configure
        from streams.settings import StreamSettings

        settings = StreamSettings(home={str(tmp_path)!r}, app={{"id": "wired"}}, web={{"port": 7123}})
        worker = configure(settings)
        import streams.agents, streams.edge, streams.web
        assert worker.app.conf.id == "wired" and worker.app.conf.web_port == 7123
        assert str(worker.app.conf.datadir).startswith({str(tmp_path)!r})
        assert streams.agents.RUNTIME is worker.runtime is streams.web.runtime is streams.edge.runtime
        assert worker.runtime.settings is settings
        assert configure(settings) is worker
        try:
            configure(StreamSettings(home={str(tmp_path)!r}, app={{"id": "other"}}))
        except RuntimeError:
            print("refused")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout
