"""The worker's app is built from the settings its entry point passes: importing ``streams.app`` reads no setting
and creates nothing, and ``create_worker`` builds a worker whose agents and views get its runtime, topics and
tables as parameters (no module global)."""

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
        print("imported")
        """,
        tmp_path,
        LETTINGO_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
    )
    assert done.returncode == 0, done.stderr
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


def test_create_worker_builds_the_app_from_the_given_settings_and_registers_every_agent_on_it(tmp_path: Path) -> None:
    # Two workers in one process, each on its own app: nothing of one is kept where the other would find it.
    done = python(
        f"""
        from streams.app import create_worker
        from streams.settings import StreamSettings

        settings = StreamSettings(home={str(tmp_path)!r}, app={{"id": "wired"}}, web={{"port": 7123}})
        worker = create_worker(settings)
        other = create_worker(StreamSettings(home={str(tmp_path)!r}, app={{"id": "other"}}, web={{"port": 7124}}))
        assert worker.app.conf.id == "wired" and worker.app.conf.web_port == 7123
        assert str(worker.app.conf.datadir).startswith({str(tmp_path)!r})
        assert worker.runtime.settings is settings and other.runtime is not worker.runtime
        agents = sorted(a.split(".")[-1] for a in worker.app.agents)
        assert agents == sorted(a.split(".")[-1] for a in other.app.agents), agents
        assert len(agents) == 7, agents
        assert set(worker.app.tables) == {{"user_state", "profiles", "scoreboard", "pending_join", "applied_offsets"}}
        assert worker.tables.user_state is worker.app.tables["user_state"]
        assert worker.tables.user_state is not other.tables.user_state
        # each agent reads its topic of the contract, on its own app's topics
        topics = {{t for agent in worker.app.agents.values() for t in agent.channel.topics}}
        assert "interactions" in topics and "profile-requests" in topics and "rated-events" in topics, topics
        print("wired")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "wired" in done.stdout


def test_the_app_settings_bound_each_table_partitions_rocksdb_and_size_the_restore(tmp_path: Path) -> None:
    # Faust's defaults (3 x 64 MiB memtables and a 2 GiB block cache per table partition's database) let a worker
    # grow by GiBs; the settings must reach the database RocksDB opens, as its OPTIONS and LOG files record them.
    done = python(
        f"""
        from streams.app import create_worker
        from streams.settings import StreamSettings

        app_settings = {{
            "id": "bounded", "recovery_buffer": 1234, "stream_buffer": 999, "fetch_max_mib": 3,
            "fetch_min_bytes": 16384, "fetch_max_wait_ms": 40,
            "rocksdb_write_buffer_mib": 5, "rocksdb_write_buffers": 2, "rocksdb_block_cache_mib": 7,
            "rocksdb_memtables_mib": 9,
        }}
        worker = create_worker(StreamSettings(home={str(tmp_path)!r}, app=app_settings))
        conf = worker.app.conf
        assert conf.stream_buffer_maxsize == 999 and conf.consumer_max_fetch_size == 3 * 2**20
        consumer = worker.app.transport.Consumer
        assert (consumer.fetch_min_bytes, consumer.fetch_max_wait_ms) == (16 * 1024, 40)
        assert worker.rocksdb.bounds == {{"block_cache": 7 * 2**20, "memtables": 9 * 2**20}}
        for table in worker.tables.all().values():
            # a standby writes in small batches whatever the restore's (tests/test_standby_buffer.py)
            assert (table.recovery_buffer_size, table.standby_buffer_size) == (1234, 20), table.name
        db = worker.tables.user_state.data._db_for_partition(0)
        db.put(b"k", b"v")
        print(worker.tables.user_state.data.partition_path(0))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    options = next(path.glob("OPTIONS-*")).read_text()
    assert f"write_buffer_size={5 * 2**20}" in options.replace(" ", "")
    assert "max_write_buffer_number=2" in options.replace(" ", "")
    assert f"capacity : {7 * 2**20}" in (path / "LOG").read_text()


def test_a_fetch_wait_beyond_ten_seconds_is_refused() -> None:
    """A fetch the broker may hold near or past the consumer's request timeout (Faust's 90 s) times out on the
    client instead of returning; ten seconds is already longer than a trickle of events should wait."""
    import pytest
    from pydantic import ValidationError

    from streams.settings import StreamSettings

    assert StreamSettings(app={"fetch_max_wait_ms": 10_000}).app.fetch_max_wait_ms == 10_000
    with pytest.raises(ValidationError, match="fetch_max_wait_ms"):
        StreamSettings(app={"fetch_max_wait_ms": 600_000})


def test_the_worker_command_sets_the_gil_switch_interval_before_it_talks_to_kafka(tmp_path: Path) -> None:
    # Generation runs in a thread beside the event loop: Python's 5 ms switch interval made every wake-up of the
    # loop during a batch wait up to 5 ms (bench latency). The command must set it from the settings.
    done = python(
        """
        import sys
        import streams.cli.worker as cli

        async def create_topics(settings):
            print("switch interval", round(sys.getswitchinterval() * 1000, 3))
            raise SystemExit(0)

        cli.create_topics = create_topics
        cli.worker()
        """,
        tmp_path,
        LETTINGO_APP_SWITCH_INTERVAL_MS="2.5",
    )
    assert done.returncode == 0, done.stderr
    assert "switch interval 2.5" in done.stdout


def test_a_switch_interval_outside_its_range_is_refused_in_one_line(tmp_path: Path) -> None:
    for value in ("0", "101", "fast"):
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli.worker"],
            capture_output=True,
            text=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("LETTINGO_")},
                "LETTINGO_HOME": str(tmp_path),
                "LETTINGO_APP_SWITCH_INTERVAL_MS": value,
            },
            cwd=REPO,
            timeout=120,
        )
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "LETTINGO_APP_SWITCH_INTERVAL_MS" in lines[0], (value, done.stderr)
