"""The worker's Faust topics, one per topic of the contract (:mod:`streams.kafka.topics`), built on a given app.

Values stay bytes so that Faust never decodes (and never silently skips) a message: an agent decodes with its
topic's own decoder (:meth:`BoundTopic.decode`, through :func:`streams.edge.decode_event`) and sends what fails
to ``dead-letters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic

import faust
from pydantic import BaseModel

from lettingo.records import (
    DeadLetter,
    Erasure,
    Feedback,
    Impression,
    InputLimits,
    Interaction,
    Item,
    ModelVersion,
    PreferencePair,
    Profile,
    ProfileCandidate,
    ProfileRequest,
    Reward,
)
from lettingo.stream_eval import EvalTrigger
from streams.kafka.topics import ALL_TOPICS, R, TopicSpec, partitions_of
from streams.settings import StreamSettings


def raw_topic(app: faust.App, settings: StreamSettings, *specs: TopicSpec[Any]) -> faust.TopicT:
    """One Faust topic over ``specs`` (several: an agent that reads them as one stream), raw bytes both ways."""
    return app.topic(
        *(settings.topic(spec.name) for spec in specs),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions_of(specs[0], settings),
        internal=all(spec.internal for spec in specs),
    )


@dataclass(frozen=True)
class BoundTopic(Generic[R]):
    """A contract topic on this worker's app: the Faust topic (to subscribe and send) and its spec (to decode)."""

    spec: TopicSpec[R]
    topic: faust.TopicT
    name: str  # the topic's full name (with the settings' prefix)

    def decode(self, payload: bytes | None, limits: InputLimits) -> R:
        return self.spec.decode(payload, limits)

    async def send(self, key: bytes | None, value: bytes | None, headers: dict[str, bytes] | None = None) -> Any:
        """Send through Faust's producer; the returned future resolves once the broker has the message."""
        return await self.topic.send(key=key, value=value, headers=headers)


@dataclass(frozen=True)
class Topics:
    """Every topic of the contract, its field named after the topic (``-`` as ``_``): :func:`build_topics` fills
    them from :data:`streams.kafka.topics.ALL_TOPICS` and fails if a field and the contract differ."""

    interactions: BoundTopic[Interaction]
    items: BoundTopic[Item]
    profile_requests: BoundTopic[ProfileRequest]
    profile_candidates: BoundTopic[ProfileCandidate]
    profiles: BoundTopic[Profile]
    impressions: BoundTopic[Impression]
    feedback: BoundTopic[Feedback]
    rewards: BoundTopic[Reward]
    preference_pairs: BoundTopic[PreferencePair]
    model_versions: BoundTopic[ModelVersion]
    dead_letters: BoundTopic[DeadLetter]
    erasures: BoundTopic[Erasure]
    rated_events: BoundTopic[EvalTrigger]
    feedback_sweeps: BoundTopic[BaseModel]


def attribute(spec: TopicSpec[Any]) -> str:
    return spec.name.replace("-", "_")


def build_topics(app: faust.App, settings: StreamSettings) -> Topics:
    return Topics(
        **{
            attribute(spec): BoundTopic(spec, raw_topic(app, settings, spec), settings.topic(spec.name))
            for spec in ALL_TOPICS
        }
    )
