"""The ACLs each component needs on a cluster that authorizes (Kafka's StandardAuthorizer, or any ACL
authorizer), as data, and their creation through the Kafka protocol (CreateAcls, by a super user).

``lettingo broker acls`` prints them for the settings in force; the secured local broker grants them to one
SCRAM user per component (``lettingo-worker``, ``lettingo-replay``, ...). The tests run each component as its
user with exactly these ACLs, so this table is what the components are known to work with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request

from streams.kafka.topics import INTERNAL_TOPICS, TOPICS
from streams.settings import StreamSettings

# Kafka's wire codes (org.apache.kafka.common.acl / resource)
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
OPERATIONS = {"ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8}
ALLOW = 3
ANY = 1

WORKER_INTERNAL_TOPICS = tuple(t.name for t in INTERNAL_TOPICS)
DEFAULT_TRAINER_GROUP = "lettingo-trainer"  # `lettingo train --group-id`'s default
# What each component reads and writes (topic names without LETTINGO_TOPIC_PREFIX).
WORKER_READS = (
    "interactions",
    "items",
    "profile-requests",
    "profile-candidates",
    "impressions",
    "feedback",
    "rewards",
    "model-versions",
    "erasures",
    *WORKER_INTERNAL_TOPICS,
)
WORKER_WRITES = (
    "profile-requests",
    "profile-candidates",
    "profiles",
    "rewards",
    "preference-pairs",
    "dead-letters",
    *WORKER_INTERNAL_TOPICS,
)
COMPONENTS = {
    "worker": "lettingo worker (Faust): the stream agents, their tables and topics",
    "replay": "lettingo replay: items and interactions in",
    "trainer": "lettingo train: preference pairs in, model versions out",
    "topics": "lettingo topics create: the topic contract",
    "forget": "lettingo users forget: an erasure event to the workers",
}


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding: ``principal`` may do ``operation`` on the resource (from any host)."""

    principal: str
    resource: str  # topic | group | cluster
    name: str
    operation: str
    pattern: str = "literal"  # literal | prefixed

    def describe(self) -> str:
        where = f"{self.resource} {self.name!r}" + (" (prefixed)" if self.pattern == "prefixed" else "")
        return f"{self.principal:<24} ALLOW {self.operation:<9} {where}"

    def wire(self) -> tuple[int, str, int, str, str, int, int]:
        return (
            RESOURCE_TYPES[self.resource],
            self.name,
            PATTERN_TYPES[self.pattern],
            self.principal,
            "*",
            OPERATIONS[self.operation],
            ALLOW,
        )


def principal_of(user: str) -> str:
    return f"User:{user}"


def user_of(component: str) -> str:
    """The SCRAM user of ``component`` on the secured local broker."""
    return f"lettingo-{component}"


def component_acls(
    component: str, settings: StreamSettings, principal: str | None = None, trainer_group: str = DEFAULT_TRAINER_GROUP
) -> list[Acl]:
    """The least ACLs with which ``component`` works for these settings (topic prefix, app id)."""
    who = principal or principal_of(user_of(component))
    topic = settings.topic

    def on_topics(names: Iterable[str], *operations: str) -> list[Acl]:
        return [Acl(who, "topic", topic(n), op) for n in names for op in operations]

    def on_app_topics(*operations: str) -> list[Acl]:
        # Topics prefixed with the app id: the tables' changelogs and Faust's assignor leader topic.
        return [Acl(who, "topic", f"{settings.app.id}-", op, "prefixed") for op in operations]

    # What create_topics creates (the worker does on start, as `lettingo topics create` does); DESCRIBE lists those
    # that exist.
    creates = on_topics([*(t.name for t in TOPICS), *WORKER_INTERNAL_TOPICS], "CREATE", "DESCRIBE")
    if component == "worker":
        return sorted(
            creates
            + on_topics(WORKER_READS, "READ")
            + on_topics(WORKER_WRITES, "WRITE")
            + on_app_topics("CREATE", "DESCRIBE", "READ", "WRITE")
            + [Acl(who, "group", settings.app.id, "READ")]
        )
    if component == "replay":
        return sorted(on_topics(["items", "interactions"], "WRITE"))
    if component == "trainer":
        return sorted(
            on_topics(["preference-pairs", "erasures"], "READ")
            + on_topics(["model-versions", "dead-letters"], "WRITE")
            + [Acl(who, "group", trainer_group, "READ")]
        )
    if component == "topics":
        return sorted(creates + on_app_topics("CREATE", "DESCRIBE"))
    if component == "forget":
        return sorted(on_topics(["erasures"], "WRITE"))
    raise ValueError(f"unknown component {component!r}: one of {', '.join(COMPONENTS)}")


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """Every binding in one CreateAcls request (aiokafka's own sends one binding per request)."""

    API_KEY = 30

    def __init__(self, acls: Iterable[Acl]) -> None:
        self._creations = [acl.wire() for acl in acls]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


async def _send(settings: StreamSettings, request: Request) -> Any:
    client = AIOKafkaClient(**settings.kafka_client_config())
    await client.bootstrap()
    try:
        return await client.send(client.get_random_node(), request)
    finally:
        await client.close()


async def create_acls(admin: StreamSettings, acls: Iterable[Acl]) -> None:
    """Create ``acls`` (an existing one is left as it is) as the super user of ``admin``'s settings."""
    acls = list(acls)
    if not acls:
        return
    response = await _send(admin, _CreateAcls(acls))
    for acl, (code, message) in zip(acls, response.creation_responses, strict=True):
        if code:
            raise for_code(code)(f"creating the ACL {acl.describe()} failed: {message}")


async def list_acls(admin: StreamSettings) -> list[Acl]:
    """Every ALLOW binding on the cluster (a super user's view)."""
    reverse_ops = {v: k for k, v in OPERATIONS.items()}
    reverse_res = {v: k for k, v in RESOURCE_TYPES.items()}
    reverse_pat = {v: k for k, v in PATTERN_TYPES.items()}
    response = await _send(admin, DescribeAclsRequest(ANY, None, ANY, None, None, ANY, ANY))
    if response.error_code:
        raise for_code(response.error_code)(response.error_message)
    return sorted(
        Acl(
            principal,
            reverse_res.get(rtype, str(rtype)),
            name,
            reverse_ops.get(op, str(op)),
            reverse_pat.get(pattern, str(pattern)),
        )
        for rtype, name, pattern, bindings in response.resources
        for principal, _host, op, permission in bindings
        if permission == ALLOW
    )


def grant_components(
    admin: StreamSettings, settings: StreamSettings, components: Iterable[str] = COMPONENTS
) -> list[Acl]:
    """Grant each component's ACLs to its user (``lettingo-<component>``); return what was granted."""
    acls = [acl for c in components for acl in component_acls(c, settings)]
    asyncio.run(create_acls(admin, acls))
    return acls
