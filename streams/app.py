"""The Faust app of a stream worker.

Importing this module (or any other ``streams`` module) reads no setting and creates nothing. :func:`create_app`
builds a Faust app from the settings it is given; :func:`create_worker` (what ``lettingo worker`` calls with the
settings it built) builds the worker: its app, its :class:`~streams.runtime.Runtime`, and the Faust topics and
tables of the topic contract (:mod:`streams.kafka.topics`), then registers every agent and web view on it
(:func:`streams.agents.register_all`, :func:`streams.web.register`). Nothing is kept in a module global: two
workers can be built in one process (each on its own app).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import faust

from streams import agents, faust_adapter, web
from streams.faust_topics import Topics, build_topics
from streams.kafka.credentials import faust_broker_credentials
from streams.runtime import Runtime
from streams.settings import StreamSettings
from streams.tables import Tables, build_tables, rocksdb_memory


def web_host(settings: StreamSettings) -> str:
    """The host other workers reach this one at (Faust redirects a table_route request to the partition's owner)."""
    web = settings.web
    return web.host or (web.bind if web.bind not in ("0.0.0.0", "::") else socket.gethostname())


def create_app(settings: StreamSettings) -> faust.App:
    """A Faust app for ``settings``; its data folder (one per worker process) is made here, not at import."""
    datadir = settings.path("worker", f"{settings.app.id}-{settings.web.port}").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
    faust_adapter.tune_fetches(app, settings.app.fetch_min_bytes, settings.app.fetch_max_wait_ms)
    return app


@dataclass(frozen=True)
class Worker:
    """What one worker runs: its settings, its Faust app, the runtime its agents share, and the Faust topics and
    tables of the topic contract on its app (their RocksDB databases on one memory budget)."""

    settings: StreamSettings
    app: faust.App
    runtime: Runtime
    topics: Topics
    tables: Tables
    rocksdb: faust_adapter.RocksDBMemory  # the block cache and memtable budget of every table's databases


def create_worker(settings: StreamSettings) -> Worker:
    """A worker for ``settings`` with its agents, timers, tasks and web views registered on its app."""
    app, memory = create_app(settings), rocksdb_memory(settings)
    tables = build_tables(app, settings, memory)
    worker = Worker(settings, app, Runtime(settings), build_topics(app, settings), tables, memory)
    agents.register_all(worker)
    web.register(worker)
    return worker
