"""A standby table partition's changelog records reach its RocksDB database in small batches.

Faust buffers a standby's changelog events per table and writes them only when the buffer holds the table's
``standby_buffer_size`` (no timer flushes it). At the restore's batch size (``LETTINGO_APP_RECOVERY_BUFFER``,
1,000) a table written a few times a minute kept minutes of events in memory and then wrote them in one large
RocksDB write batch, the transient peak that grew a worker's malloc arenas in steps in the soak
(``python -m bench.memory_probe``; docs/benchmarks.md, "Where the RSS steps come from")."""

from __future__ import annotations

from pathlib import Path

from tests.test_settings_app import python


def test_standby_records_are_written_in_small_batches_while_the_restore_keeps_its_batch(tmp_path: Path) -> None:
    done = python(
        f"""
        from streams.app import create_worker
        from streams.settings import StreamSettings
        from streams.tables import STANDBY_BUFFER

        worker = create_worker(StreamSettings(home={str(tmp_path)!r}, app={{"id": "standby", "recovery_buffer": 1000}}))
        for table in worker.tables.all().values():
            assert table.recovery_buffer_size == 1000, (table.name, table.recovery_buffer_size)
            assert table.standby_buffer_size == STANDBY_BUFFER <= 50, (table.name, table.standby_buffer_size)
        small = create_worker(StreamSettings(home={str(tmp_path)!r}, app={{"id": "small", "recovery_buffer": 5}}))
        assert {{t.standby_buffer_size for t in small.tables.all().values()}} == {{5}}
        print("bounded")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "bounded" in done.stdout
