"""Every topic of the contract as a raw-bytes Faust topic.

Values stay bytes so that Faust never decodes (and never silently skips) a message: the agents decode with
:func:`lettingo.records.decode_record` and send what fails to ``dead-letters``.
"""

from __future__ import annotations

import faust

from streams.app import app, settings


def raw_topic(name: str, *extra: str, internal: bool = False) -> faust.TopicT:
    return app.topic(
        settings.topic(name),
        *(settings.topic(e) for e in extra),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=1 if name == "model-versions" else settings.topics.partitions,
        internal=internal,
    )


interactions = raw_topic("interactions")
items = raw_topic("items")
profile_requests = raw_topic("profile-requests")
profile_candidates = raw_topic("profile-candidates")
profiles = raw_topic("profiles")
rewards = raw_topic("rewards")
preference_pairs = raw_topic("preference-pairs")
dead_letters = raw_topic("dead-letters")
erasures = raw_topic("erasures")
# The feedback join reads three topics as one stream; sweeps are its own timer's wake-up calls.
FEEDBACK_SWEEPS = "feedback-sweeps"
# Task evaluation's input: ingest's newly applied rated events and the scoreboard's newly opened candidates
# (lettingo.stream_eval.EvalTrigger). ``interactions`` has one consumer, ingest; see streams.agents.task_eval.
RATED_EVENTS = "rated-events"
INTERNAL_TOPICS = (FEEDBACK_SWEEPS, RATED_EVENTS)
rated_events = raw_topic(RATED_EVENTS, internal=True)
feedback_sweeps = raw_topic(FEEDBACK_SWEEPS, internal=True)
join_inputs = raw_topic("impressions", "feedback", FEEDBACK_SWEEPS)
candidates_and_rewards = raw_topic("profile-candidates", "rewards")
