"""The typed history reference: one parse of ``"<count>@<event id>"``, the records' wire format unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from lettingo import records
from lettingo.bounds import Evictions, StateBounds
from lettingo.data import LabelScheme
from lettingo.drift import DriftConfig
from lettingo.history_ref import HistoryRef, HistoryRefField
from lettingo.ingest import IngestLimits, ingest_event
from lettingo.regeneration import ProfileHistory
from lettingo.scoreboard import Scoreboard
from lettingo.user_state import UserState

REF = "12@ml:u1:i9:1700000000"

# Bytes as the records were written before the reference was typed (model_dump_json of the string-typed records).
STORED: list[tuple[type[BaseModel], bytes]] = [
    (
        records.ProfileRequest,
        b'{"user_id":"u1","reason":"drift","drift_score":0.25,"ts":1700000000.5,"attempt":0,'
        b'"history_ref":"12@ml:u1:i9:1700000000","caused_at":null,"history":[{"item_id":"i9","rating":4.0}]}',
    ),
    (
        records.ProfileRequest,
        b'{"user_id":"u2","reason":"manual","drift_score":0.0,"ts":1700000001.0,"attempt":0,"history_ref":"",'
        b'"caused_at":null,"history":[]}',
    ),
    (
        records.ProfileCandidate,
        b'{"profile_id":"0123456789abcdef","text":"Likes comedies.","generator":"writer:titles","model_version":"v1",'
        b'"seed":0,"user_id":"u1","history_ref":"12@ml:u1:i9:1700000000","prompt":"p","ts":1700000002.0}',
    ),
    (
        records.Profile,
        b'{"user_id":"u1","profile_id":"0123456789abcdef","version":2,"text":"Likes comedies.","model_version":"v1",'
        b'"reason":"drift","ts":1700000000.5,"history_ref":"12@ml:u1:i9:1700000000","generator":"writer:titles"}',
    ),
    (
        ProfileHistory,
        b'{"current":{"user_id":"u1","profile_id":"0123456789abcdef","version":2,"text":"Likes comedies.",'
        b'"model_version":"v1","reason":"drift","ts":1700000000.5,"history_ref":"12@ml:u1:i9:1700000000",'
        b'"generator":"writer:titles"},"history_ref":"12@ml:u1:i9:1700000000","versions":[{"version":2,'
        b'"profile_id":"0123456789abcdef","model_version":"v1","reason":"drift",'
        b'"history_ref":"12@ml:u1:i9:1700000000","ts":1700000000.5}]}',
    ),
    (
        Scoreboard,
        b'{"rounds":[{"round_id":"3@e3","prompt":"p","policy_version":"v","candidates":{},"emitted_pairs":[],'
        b'"closed":false},{"round_id":"","prompt":"q","policy_version":"v","candidates":{},"emitted_pairs":[],'
        b'"closed":true}]}',
    ),
]


@pytest.mark.parametrize(("model", "payload"), STORED, ids=[f"{m.__name__}-{i}" for i, (m, _) in enumerate(STORED)])
def test_stored_records_decode_typed_and_write_back_the_same_bytes(model: type[BaseModel], payload: bytes) -> None:
    decoded = model.model_validate_json(payload)
    assert decoded.model_dump_json().encode() == payload


def test_decoded_references_are_typed() -> None:
    request = records.ProfileRequest.model_validate_json(STORED[0][1])
    assert request.history_ref == HistoryRef(12, "ml:u1:i9:1700000000")
    assert records.ProfileRequest.model_validate_json(STORED[1][1]).history_ref is None
    board = Scoreboard.model_validate_json(STORED[-1][1])
    assert [r.seq for r in board.rounds] == [3, 0]


@pytest.mark.parametrize("text", ["abc@x", "3", "-1@x", "03@x", "+3@x", " 3@x", "3 @x", "@x"])
def test_a_malformed_reference_is_refused_at_decoding(text: str) -> None:
    payload = f'{{"user_id":"u","reason":"manual","ts":1,"history_ref":"{text}"}}'
    with pytest.raises(records.RecordError) as e:
        records.decode_record(records.ProfileRequest, payload, records.InputLimits(10_000, 0, 1e12, 0, 5))
    assert e.value.reason == "invalid_record" and "history_ref" in str(e.value)


def test_records_accept_the_typed_value_and_its_string() -> None:
    by_string = records.Profile(
        user_id="u", profile_id="p", version=1, text="t", model_version="v", reason="manual", history_ref=REF
    )
    by_value = by_string.model_copy(update={"history_ref": HistoryRef.parse(REF)})
    assert by_string == by_value and by_string.to_bytes() == by_value.to_bytes()


def test_empty_history_and_no_history_are_different() -> None:
    assert HistoryRef.parse("0@") == HistoryRef(0, "") == HistoryRef.of(0, "ignored")
    assert HistoryRef.parse("") is None
    assert str(HistoryRef(0, "")) == "0@"


def test_order_is_by_count_and_equality_needs_the_event_id_too() -> None:
    a, b, c = HistoryRef(3, "e3"), HistoryRef(3, "other"), HistoryRef(4, "e4")
    assert a < c and c > b and a <= b and a >= b
    assert not a < b and not b < a and a != b
    assert sorted([c, a]) == [a, c]


class _Holder(BaseModel):
    ref: HistoryRefField = None


@given(st.integers(min_value=0, max_value=10**12), st.text(max_size=40))
def test_every_reference_round_trips_through_its_string_and_json(count: int, event_id: str) -> None:
    ref = HistoryRef.of(count, event_id)
    assert HistoryRef.parse(str(ref)) == ref
    holder = _Holder(ref=ref)
    assert _Holder.model_validate_json(holder.model_dump_json()) == holder


def test_the_user_state_and_a_replayed_request_use_the_typed_reference() -> None:
    state = UserState(user_id="u")
    limits = IngestLimits(keep_events=20, seen_max=100, bounds=StateBounds())
    steps = []
    for n in range(1, 4):
        event = records.Interaction(event_id=f"u:e{n}", user_id="u", item_id=f"i{n}", kind="rating", rating=4, ts=n)
        steps.append(
            ingest_event(state, event, None, LabelScheme(), DriftConfig(cold_start_after=3), limits, Evictions())
        )
    assert state.history_ref == HistoryRef(3, "u:e3")
    assert steps[-1].request is not None and steps[-1].request.history_ref == HistoryRef(3, "u:e3")
    assert [e.seq for e in state.events_up_to(HistoryRef(2, "u:e2"))] == [1, 2]
    assert [e.seq for e in state.events_up_to(None)] == [1, 2, 3]
    # The event that caused the request, replayed, returns the request again; an earlier one does not.
    replay = records.Interaction(event_id="u:e3", user_id="u", item_id="i3", kind="rating", rating=4, ts=3)
    again = ingest_event(state, replay, None, LabelScheme(), DriftConfig(cold_start_after=3), limits, Evictions())
    assert not again.applied and again.request == steps[-1].request
    earlier = replay.model_copy(update={"event_id": "u:e2", "item_id": "i2", "ts": 2})
    assert (
        ingest_event(state, earlier, None, LabelScheme(), DriftConfig(cold_start_after=3), limits, Evictions()).request
        is None
    )


def test_the_demo_report_matches_a_profile_to_the_event_its_history_ends_with() -> None:
    from streams.demo.report import profile_latencies

    profile = records.Profile(
        user_id="u", profile_id="p", version=1, text="t", model_version="v", reason="drift", history_ref="3@u:e@3"
    )
    sent = records.Interaction(event_id="u:e@3", user_id="u", item_id="i", kind="click", ts=1)
    unnamed = profile.model_copy(update={"history_ref": None})
    assert profile_latencies([(5_000, profile), (6_000, unnamed)], [(2_000, sent)]) == [3.0]
