"""``lettingo worker`` (and ``python -m streams.cli.worker``): create missing topics, then run one Faust worker."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer
from faust.worker import Worker

from lettingo.cli.errors import UserError
from lettingo.logsafe import configure_safe_logging
from streams.app import create_worker
from streams.kafka.access import check_reads
from streams.kafka.topics import create_topics
from streams.malloc import fix_malloc_thresholds
from streams.settings import StreamSettings


def worker(loglevel: str = typer.Option("info", "--loglevel", "-l", help="Faust log level.")) -> None:
    """Run a stream worker (agents, tables, web views and /metrics on LETTINGO_WEB_PORT)."""
    fix_malloc_thresholds()  # before RocksDB and the models allocate: a heap that stops creeping (streams.malloc)
    settings = StreamSettings.load()
    # Generation holds the GIL in a thread beside the event loop: a shorter switch interval lets the loop's
    # wake-ups (fetches, produces, the next batch's requests) in sooner while a batch generates (bench latency).
    sys.setswitchinterval(settings.app.switch_interval_ms / 1000)
    json_lines = settings.log_format == "json"
    configure_safe_logging(json_lines=json_lines)  # escaped, rate-limited lines from the start (topics talk to Kafka)
    asyncio.run(create_topics(settings))  # the contract's, internal and changelog topics
    # A principal without READ on an input stops here with one line, not later among Faust's crash tracebacks.
    asyncio.run(check_reads(settings, [settings.topic(t) for t in ("interactions", "profile-requests", "items")]))
    app = create_worker(settings).app

    class SafeLoggingWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            # Faust has just replaced the root logger's handlers with its own (mode's setup_logging): escape and
            # rate-limit those, or a broker outage writes hundreds of aiokafka lines a second (issue 14).
            configure_safe_logging(json_lines=json_lines)

    faust_worker = SafeLoggingWorker(app, loglevel=loglevel, quiet=True)
    # At warning and above Faust's terminal spinner sets the root logger to DEBUG, so every debug record of every
    # library is built and handled: about +75 % CPU per ingested event (bench ingest).
    faust_worker.spinner = None
    faust_worker.execute_from_commandline()


def main() -> None:
    """``python -m streams.cli.worker``: as ``lettingo worker``, a known failure is one line, not a traceback."""
    try:
        typer.run(worker)
    except UserError as e:
        print(f"lettingo worker: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
