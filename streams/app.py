"""The Faust app: ``lettingo worker`` or ``faust -A streams.app worker`` runs it.

Settings come from ``LETTINGO_*`` variables when this module is imported. Agents, tables and views register
themselves when :mod:`streams.agents` and :mod:`streams.web` are imported at the bottom.
"""

from __future__ import annotations

import socket

import faust

from lettingo.settings import get_settings
from streams.kafka.credentials import faust_broker_credentials

settings = get_settings()
DATADIR = settings.path("worker", f"{settings.app_id}-{settings.web_port}").resolve()
DATADIR.parent.mkdir(parents=True, exist_ok=True)

# The host other workers reach this one at (Faust redirects a table_route request to the partition's owner).
WEB_HOST = settings.web_host or (
    settings.web_bind if settings.web_bind not in ("0.0.0.0", "::") else socket.gethostname()
)

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
    broker_credentials=faust_broker_credentials(settings),  # SASL / SSL, as for the aiokafka clients
    store="rocksdb://",
    # One folder per worker process: the web port is unique per worker on a host.
    datadir=str(DATADIR),
    web_port=settings.web_port,
    web_bind=settings.web_bind,
    # Faust's own views list tables, serve any key's raw value and the partition router: user data without any
    # guard. Only this project's views (streams.web) are served.
    web_tables_enabled=False,
    web_router_enabled=False,
    web_graph_enabled=False,
    web_metrics_enabled=False,
    web_host=settings.web_host
    or (settings.web_bind if settings.web_bind not in ("0.0.0.0", "::") else socket.gethostname()),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    topic_allow_declare=True,  # changelog topics; the contract's topics are created by create_topics first
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=1.0,
    table_standby_replicas=settings.table_standby_replicas,
    broker_session_timeout=settings.kafka_session_timeout_seconds,
    broker_heartbeat_interval=settings.kafka_heartbeat_seconds,
    autodiscover=False,
    version=1,
)

from streams import agents, web  # noqa: E402, F401  (registers agents, tables and views)

__all__ = ["app", "settings"]
