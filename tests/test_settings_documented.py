"""Every setting is documented in the README (its table is generated from the fields), secrets never print, the
documented variable names reach the nested sections, and invalid settings stop an entry point with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lettingo.errors import ConfigError
from lettingo.settings import Settings, env_items, iter_fields, settings_table
from streams.settings import StreamSettings
from tests.conftest import REPO


def test_the_readme_settings_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert settings_table(StreamSettings) in readme, "run `lettingo settings --markdown` and paste it into README.md"


def test_every_setting_has_a_description() -> None:
    assert [path for path, _, _, field in iter_fields(StreamSettings) if not field.description] == []


def test_every_env_name_in_deploy_and_tests_is_a_setting() -> None:
    known = {name for name, _ in env_items(StreamSettings())}
    used = set()
    for folder in ("deploy", "tests", "streams", "bench", "trainer"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".env", ".sh", ".md", ""}:
                text = path.read_text(errors="ignore")
                used |= {w.rstrip("=:\"'") for w in _env_words(text)}
    # the compose files name their images with the same prefix: not settings
    unknown = sorted(n for n in used if n not in known and not n.endswith(("_", "_IMAGE")))
    assert unknown == [], f"names used but not settings: {unknown}"


def _env_words(text: str) -> list[str]:
    import re

    return re.findall(r"\bLETTINGO_[A-Z0-9_]+", text)


def test_documented_names_reach_the_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "LETTINGO_KAFKA_BOOTSTRAP": "broker:9092",
        "LETTINGO_SEEN_EVENTS_MAX": "7",
        "LETTINGO_WORKER_HISTORY_WINDOW": "3",
        "LETTINGO_CONTROLLER_PORT": "29093",
        "LETTINGO_APP_ID": "fleet",
        "LETTINGO_TABLE_STANDBY_REPLICAS": "2",
        "LETTINGO_GATE_USERS": "11",
        "LETTINGO_PROMPT_MAX_TOKENS": "512",
    }.items():
        monkeypatch.setenv(name, value)
    s = StreamSettings(kafka={"connect_timeout_seconds": 3})  # a section given in part keeps the environment
    assert (s.kafka.bootstrap, s.kafka.connect_timeout_seconds) == ("broker:9092", 3)
    assert (s.worker.seen_events_max, s.worker.history_window, s.worker.prompt_max_tokens) == (7, 3, 512)
    assert (s.broker.controller_port, s.app.id, s.app.table_standby_replicas) == (29093, "fleet", 2)
    assert s.trainer.gate_users == 11


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LETTINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "LETTINGO_KAFKA_SASL_MECHANISM"),
        (
            {"LETTINGO_KAFKA_SECURITY_PROTOCOL": "SSL", "LETTINGO_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "LETTINGO_KAFKA_SSL_CAFILE=/nonexistent/ca.pem",
        ),
        (
            {"LETTINGO_KAFKA_SECURITY_PROTOCOL": "SSL", "LETTINGO_KAFKA_SSL_KEYFILE": "/k.pem"},
            "LETTINGO_KAFKA_SSL_KEYFILE is set without LETTINGO_KAFKA_SSL_CERTFILE",
        ),
        ({"LETTINGO_WORKER_HISTORY_WINDOW": "0"}, "LETTINGO_WORKER_HISTORY_WINDOW"),
        ({"LETTINGO_RATING_MIN": "6"}, "LETTINGO_RATING_MIN=6.0 is above LETTINGO_RATING_MAX=5.0"),
        ({"LETTINGO_KAFKA_HEARTBEAT_SECONDS": "5"}, "LETTINGO_KAFKA_HEARTBEAT_SECONDS"),
    ],
)
def test_invalid_settings_fail_when_built_naming_the_variable(monkeypatch, env: dict[str, str], named: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        StreamSettings.load()


def test_a_worker_with_sasl_and_no_user_stops_at_start_up_with_one_line(tmp_path: Path) -> None:
    env = {"LETTINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LETTINGO_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", "worker"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == ConfigError.exit_code, done.stderr
    assert "LETTINGO_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs LETTINGO_KAFKA_SASL_MECHANISM" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_core_settings_hold_no_infrastructure() -> None:
    names = {name for name, _ in env_items(Settings())}
    assert not any(
        n.startswith(("LETTINGO_KAFKA_", "LETTINGO_WEB_", "LETTINGO_BROKER_", "LETTINGO_TOPIC_")) for n in names
    )
    assert "LETTINGO_APP_ID" not in names


def test_settings_command_masks_the_password() -> None:
    env = {"LETTINGO_KAFKA_SASL_PASSWORD": "hunter2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", "settings"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "LETTINGO_KAFKA_SASL_PASSWORD=**********" in done.stdout
    assert "hunter2" not in done.stdout


def test_settings_markdown_prints_the_readme_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lettingo.cli.main", "settings", "--markdown"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == settings_table(StreamSettings)


ENTRY_POINTS = (
    "lettingo/cli/",
    "streams/cli/",
    "streams/app.py",
    "trainer/cli.py",
    "trainer/base_cli.py",
    "trainer/warmup.py",
    "streams/demo/served_profiles.py",  # python -m streams.demo.served_profiles
)


def test_only_entry_points_build_settings() -> None:
    """Library code is handed its settings (or the values it needs); only commands and the worker's app build them."""
    import re

    builds = re.compile(r"\b(Stream)?Settings(\.load)?\(")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("lettingo", "streams", "trainer")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "settings.py" and not str(path.relative_to(REPO)).startswith(ENTRY_POINTS)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if builds.search(line)
    ]
    assert found == [], f"settings built outside an entry point: {found}"
