"""Every setting is documented in the README, and secrets never print."""

from __future__ import annotations

import subprocess
import sys

from lettingo.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [
        f"LETTINGO_{name.upper()}" for name in Settings.model_fields if f"`LETTINGO_{name.upper()}`" not in readme
    ]
    assert not missing, f"document these settings in README.md: {missing}"


def test_settings_command_masks_the_password() -> None:
    env = {"LETTINGO_KAFKA_SASL_PASSWORD": "hunter2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", "settings"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "LETTINGO_KAFKA_SASL_PASSWORD=**********" in done.stdout
    assert "hunter2" not in done.stdout
