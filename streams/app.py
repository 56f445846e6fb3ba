"""The Faust app of a stream worker.

Importing this module reads no setting and creates nothing. :func:`create_app` builds a Faust app from the settings
it is given; :func:`configure` (what ``lettingo worker`` calls with the settings it built) builds the worker's app and
its :class:`~streams.runtime.Runtime`, then registers the agents, tables and views on them. ``faust -A streams.app
worker`` also works: the first read of :data:`app` configures the worker from the ``LETTINGO_*`` variables.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust

from streams import faust_adapter
from streams.kafka.credentials import faust_broker_credentials
from streams.runtime import Runtime
from streams.settings import StreamSettings


def web_host(settings: StreamSettings) -> str:
    """The host other workers reach this one at (Faust redirects a table_route request to the partition's owner)."""
    web = settings.web
    return web.host or (web.bind if web.bind not in ("0.0.0.0", "::") else socket.gethostname())


def create_app(settings: StreamSettings) -> faust.App:
    """A Faust app for ``settings``; its data folder (one per worker process) is made here, not at import."""
    datadir = settings.path("worker", f"{settings.app.id}-{settings.web.port}").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app.id,
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        broker_credentials=faust_broker_credentials(settings),  # SASL / SSL, as for the aiokafka clients
        store="rocksdb://",
        TableManager=faust_adapter.table_manager(settings.kafka_client_config() if settings.app.bulk_restore else None),
        # One folder per worker process: the web port is unique per worker on a host.
        datadir=str(datadir),
        web_port=settings.web.port,
        web_bind=settings.web.bind,
        # Faust's own views list tables, serve any key's raw value and the partition router: user data without any
        # guard. Only this project's views (streams.web) are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        web_host=web_host(settings),
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication,
        topic_allow_declare=True,  # changelog topics; the contract's topics are created by create_topics first
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        table_standby_replicas=settings.app.table_standby_replicas,
        # A restore reads a changelog through the same queue and fetches as the streams.
        stream_buffer_maxsize=settings.app.stream_buffer,
        consumer_max_fetch_size=settings.app.fetch_max_mib * 2**20,
        broker_session_timeout=settings.kafka.session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka.heartbeat_seconds,
        autodiscover=False,
        version=1,
    )


def table_options(settings: StreamSettings) -> dict[str, Any]:
    """Keyword arguments of every ``app.Table``: the restore batch and the bounded RocksDB memory of each table
    partition's database (``options`` reach :class:`faust.stores.rocksdb.RocksDBOptions`; Faust's defaults, 3 x
    64 MiB memtables and a 2 GiB block cache per database, grow a worker by GiBs over its many databases)."""
    app = settings.app
    return {
        "recovery_buffer_size": app.recovery_buffer,
        "standby_buffer_size": app.recovery_buffer,
        "options": {
            "write_buffer_size": app.rocksdb_write_buffer_mib * 2**20,
            "max_write_buffer_number": app.rocksdb_write_buffers,
            "block_cache_size": app.rocksdb_block_cache_mib * 2**20,
        },
    }


@dataclass(frozen=True)
class Worker:
    """What one worker process runs: its settings, its Faust app and the runtime its agents share."""

    settings: StreamSettings
    app: faust.App
    runtime: Runtime


_worker: Worker | None = None

if TYPE_CHECKING:  # what __getattr__ below serves, for the type checker
    app: faust.App
    settings: StreamSettings
    runtime: Runtime


def configure(settings: StreamSettings) -> Worker:
    """Build this process's worker from ``settings`` and register its agents, tables and views (once a process:
    Faust agents are declared on one app)."""
    global _worker
    if _worker is not None:
        if _worker.settings != settings:
            raise RuntimeError("this process's worker is already configured with other settings")
        return _worker
    _worker = Worker(settings, create_app(settings), Runtime(settings))
    from streams import agents, web  # noqa: F401  (the modules declare their agents, tables and views on _worker)

    return _worker


def current() -> Worker:
    """The configured worker; under ``faust -A streams.app`` the first call configures it from the environment."""
    return _worker if _worker is not None else configure(StreamSettings.load())


def __getattr__(name: str) -> Any:
    # ``from streams.app import app`` in the modules that declare agents, tables and topics, and ``faust -A``.
    if name in ("app", "settings", "runtime"):
        return getattr(current(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
