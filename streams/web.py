"""Web views: a user's profile and its versions, this worker's model and health, Prometheus ``/metrics``."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from pydantic import SecretStr

from lettingo.regeneration import ProfileHistory
from streams import metrics, tables
from streams.runtime import Runtime

if TYPE_CHECKING:
    import faust

    from streams.app import Worker


def authorized(request: Request, token: SecretStr | None) -> bool:
    """With a token set, the request must carry ``Authorization: Bearer <token>`` (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def register(worker: Worker) -> None:
    """Declare this project's views on ``worker``'s app."""
    app, runtime = worker.app, worker.runtime
    profiles = worker.tables.profiles

    @app.page("/users/{user_id}/profile")
    class UserProfile(View):
        """A user's serving profile and its earlier versions; behind ``LETTINGO_WEB_PROFILE_TOKEN`` when set."""

        # Faust types a routed handler as (view, request); it passes the match_info value too, as its docs show.
        @app.table_route(table=profiles, match_info="user_id")  # type: ignore[arg-type]
        async def get(self, request: Request, user_id: str) -> Response:
            if not authorized(request, runtime.settings.web.profile_token):
                return self.json(
                    {"error": "a bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="lettingo"'},
                )
            history = tables.read(profiles, user_id, ProfileHistory)
            if history is None:
                return self.json({"user_id": user_id, "error": "no profile"}, status=404)
            return self.json(json.loads(history.model_dump_json()))

    @app.page("/health")
    class Health(View):
        """Liveness: 200 while the process serves requests, with what it runs (``/ready`` says whether to send it
        traffic)."""

        async def get(self, request: Request) -> Response:
            return self.json(health(app, runtime))

    @app.page("/ready")
    class Ready(View):
        """Readiness: 503 until the worker can serve, and while a partition is stalled (messages wait, nothing is
        applied: see streams.applied)."""

        async def get(self, request: Request) -> Response:
            body = readiness(app, runtime)
            return self.json(body, status=200 if body["ready"] else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


def health(app: faust.App, runtime: Runtime) -> dict[str, object]:
    policy = runtime.policy
    evaluator = runtime.evaluator
    return {
        "status": "ok",
        "generators_ready": runtime.generators_ready.is_set(),
        "evaluator_ready": runtime.evaluator_ready.is_set(),
        "reader_version": evaluator.version if evaluator else None,
        "model_version": policy.current.version if policy else None,
        "generator": policy.current.generator.name if policy else None,
        "previous_model_version": policy.previous.version if policy and policy.previous else None,
        "refused_model_versions": policy.refused if policy else {},
        "catalog_items": len(runtime.catalog),
        "catalog_ready": runtime.catalog_ready.is_set(),
        "assigned_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()),
        "active_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_actives()),
        "standby_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_standbys()),
        "stalled_partitions": runtime.stalled_partitions,
    }


def readiness(app: faust.App, runtime: Runtime) -> dict[str, object]:
    """What must hold before this worker serves: models, reader and catalogue loaded, its tables recovered from
    their changelogs (not mid-rebalance), no partition stalled."""
    checks = {
        "catalog_ready": runtime.catalog_ready.is_set(),
        "generators_ready": runtime.generators_ready.is_set(),
        "evaluator_ready": runtime.evaluator_ready.is_set(),
        "tables_recovered": not app.in_recovery and not app.rebalancing,
    }
    stalled = runtime.stalled_partitions
    return {"ready": all(checks.values()) and not stalled, **checks, "stalled_partitions": stalled}
