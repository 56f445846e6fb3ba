"""Hostile input at the edge: ``decode_record`` returns a record within the limits or raises ``RecordError``.

Property tests (hypothesis) feed each input record type (Interaction, Item, Impression, Feedback) arbitrary bytes,
arbitrary JSON, and valid records with one field swapped for a hostile value or one key written twice; example
tests pin each reason. No broker: this is the pure decoder.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from lettingo.records import (
    ID_PATTERN,
    Feedback,
    Impression,
    InputLimits,
    Interaction,
    Item,
    Record,
    RecordError,
    decode_record,
)
from lettingo.settings import Settings

NOW = 1_700_000_000.0  # 2023-11-14
LIMITS = InputLimits(max_bytes=65_536, ts_min=0.0, ts_max_ahead_s=86_400.0, rating_min=0.0, rating_max=5.0)
REASONS = {
    "empty",
    "oversized",
    "invalid_json",
    "duplicate_key",
    "invalid_record",
    "implausible_ts",
    "rating_out_of_scale",
}
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
YEAR_50000 = (50_000 - 1970) * 365.2425 * 86_400

VALID: dict[type[Record], dict[str, Any]] = {
    Interaction: {
        "event_id": "ml-latest-small:1:31:964982703",
        "user_id": "1",
        "item_id": "31",
        "kind": "rating",
        "rating": 2.5,
        "ts": 964_982_703.0,
        "text": "loved it",
    },
    Item: {
        "item_id": "31",
        "title": "Dangerous Minds (1995)",
        "attributes": ["Drama"],
        "year": 1995,
        "description": "school, teacher",
    },
    Impression: {
        "request_id": "r-1",
        "user_id": "u-1",
        "profile_id": "0f3a9c",
        "item_ids": ["31", "32"],
        "ts": NOW - 5,
    },
    Feedback: {"request_id": "r-1", "user_id": "u-1", "item_id": "31", "kind": "rating", "value": 4.0, "ts": NOW},
}
RECORD_TYPES = list(VALID)


def fast(examples: int) -> hsettings:
    return hsettings(max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def decode(record_type: type[Record], payload: bytes | str | None, limits: InputLimits = LIMITS) -> Record | None:
    """The record, or None for a RecordError with a known reason and a short, single-line detail; any other
    exception fails the test."""
    try:
        record = decode_record(record_type, payload, limits, now=NOW)
    except RecordError as e:
        assert e.reason in REASONS, e.reason
        detail = str(e)
        assert len(detail) <= 300 and detail.isprintable(), detail
        return None
    assert isinstance(record, record_type)
    assert_within_limits(record, limits)
    return record


def assert_within_limits(record: Record, limits: InputLimits) -> None:
    def walk(value: object) -> None:
        if isinstance(value, float):
            assert math.isfinite(value), value
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for name in type(record).model_fields:
        walk(getattr(record, name))
    for name in ("event_id", "user_id", "item_id", "request_id", "profile_id"):
        if name in type(record).model_fields:
            assert ID.fullmatch(getattr(record, name)), getattr(record, name)
    if isinstance(record, Impression):
        assert all(ID.fullmatch(i) for i in record.item_ids)
    if hasattr(record, "ts"):
        assert limits.ts_min <= record.ts <= NOW + limits.ts_max_ahead_s
    if isinstance(record, Interaction) and record.rating is not None:
        assert limits.rating_min <= record.rating <= limits.rating_max
    if isinstance(record, Feedback) and record.kind == "rating":
        assert limits.rating_min <= record.value <= limits.rating_max
    if isinstance(record, Item) and record.year is not None:
        assert 1000 <= record.year <= 2200


def render(pairs: list[tuple[str, str]]) -> bytes:
    """A JSON object from (key, raw JSON text of the value) pairs, in order, duplicates kept."""
    return ("{" + ",".join(f"{json.dumps(k)}:{raw}" for k, raw in pairs) + "}").encode("utf-8", "surrogatepass")


def valid_pairs(record_type: type[Record]) -> list[tuple[str, str]]:
    return [(k, json.dumps(v)) for k, v in VALID[record_type].items()]


# ---------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
hostile_chars = st.sampled_from(
    [
        "\n",
        "\r",
        "\t",
        "\x00",
        "\x1b",
        "\x7f",
        "\u2028",
        "\u2029",
        "\u0085",
        " ",
        "é",
        "\ufeff",
        "\u202e",
        '"',
        "\\",
        "/",
        "..",
        "-",
        "_",
    ]
)
hostile_strings = st.lists(st.one_of(hostile_chars, st.text(max_size=4)), max_size=12).map("".join) | st.text(
    min_size=120, max_size=140
)
# Raw JSON text for one value: what a hostile producer can put after a key.
hostile_raw = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e308",
            "-1e308",
            "-0.0",
            "0",
            "-1",
            "5e-324",
            "1" * 5000,
            "9" * 40,
            "true",
            "false",
            "null",
            "[]",
            "{}",
            '""',
            '"inf"',
            '"-inf"',
            '"Infinity"',
            '"NaN"',
            '"nan"',
            '"1e400"',
            '" 1 "',
            '"\\ud800"',
            '"a\\udc00b"',
            '"\\u0000"',
            '"a\\nb"',
            '"a\nb"',
            '"a\x00b"',
            "[" * 2000 + "]" * 2000,
            '{"a":' * 1500 + "1" + "}" * 1500,
            '"' + "x" * 129 + '"',
            '"' + "7" * 128 + '"',
            str(YEAR_50000),
            "7",
            "5.0000001",
            "50000",
            "999",
            "2201",
        ]
    ),
    hostile_strings.map(json.dumps),
    st.floats().map(lambda f: json.dumps(f)),
    st.integers().map(str),
    st.floats(min_value=-1e13, max_value=1e13).map(repr),
    json_values.map(json.dumps),
)


def raw_as_value(raw: str) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@fast(200)
@given(payload=st.binary(max_size=512))
def test_any_bytes_give_a_record_or_a_record_error(record_type: type[Record], payload: bytes) -> None:
    decode(record_type, payload)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@fast(150)
@given(value=json_values)
def test_any_json_gives_a_record_or_a_record_error(record_type: type[Record], value: object) -> None:
    decode(record_type, json.dumps(value).encode())


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@fast(100)
@given(data=st.data())
def test_any_object_of_the_records_keys_gives_a_record_or_a_record_error(
    record_type: type[Record], data: st.DataObject
) -> None:
    keys = st.sampled_from([*VALID[record_type], "extra"])
    value = data.draw(st.dictionaries(keys, json_values | hostile_raw.map(raw_as_value)))
    decode(record_type, json.dumps(value, allow_nan=True).encode())


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@fast(300)
@given(data=st.data())
def test_a_valid_record_with_one_hostile_field_gives_a_record_or_a_record_error(
    record_type: type[Record], data: st.DataObject
) -> None:
    pairs = valid_pairs(record_type)
    index = data.draw(st.integers(0, len(pairs)), label="field")  # len(pairs): an extra, unknown field
    raw = data.draw(hostile_raw, label="raw value")
    if index == len(pairs):
        pairs.append(("extra", raw))
    else:
        pairs[index] = (pairs[index][0], raw)
    if data.draw(st.booleans(), label="as str"):
        payload: bytes | str = render(pairs).decode("utf-8", "surrogatepass")
    else:
        payload = render(pairs)
    decode(record_type, payload)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
@fast(100)
@given(data=st.data())
def test_a_key_written_twice_is_always_refused(record_type: type[Record], data: st.DataObject) -> None:
    pairs = valid_pairs(record_type)
    key, _ = data.draw(st.sampled_from(pairs), label="key")
    again = data.draw(st.sampled_from([v for _, v in pairs]) | json_values.map(json.dumps), label="second value")
    pairs.insert(data.draw(st.integers(0, len(pairs)), label="where"), (key, again))
    with pytest.raises(RecordError) as caught:
        decode_record(record_type, render(pairs), LIMITS, now=NOW)
    assert caught.value.reason == "duplicate_key"


@pytest.mark.parametrize("record_type", [Interaction, Impression, Feedback], ids=lambda t: t.__name__)
@fast(150)
@given(ts=st.floats(allow_nan=True, allow_infinity=True) | st.floats(min_value=-10.0, max_value=NOW + 100_000.0))
def test_a_timestamp_is_kept_exactly_when_it_is_within_the_limits(record_type: type[Record], ts: float) -> None:
    record = decode(record_type, payload_with(record_type, ts=json.dumps(ts)))
    plausible = math.isfinite(ts) and LIMITS.ts_min <= ts <= NOW + LIMITS.ts_max_ahead_s
    assert (record is not None) == plausible, ts


@fast(100)
@given(user_id=st.text(max_size=140))
def test_an_id_is_kept_exactly_when_it_is_in_the_safe_charset(user_id: str) -> None:
    pairs = [(k, json.dumps(user_id) if k == "user_id" else v) for k, v in valid_pairs(Interaction)]
    record = decode(Interaction, render(pairs))
    assert (record is not None) == bool(ID.fullmatch(user_id)), repr(user_id)


# ---------------------------------------------------------------- examples: one per reason


def payload_with(record_type: type[Record], **raw: str) -> bytes:
    """A valid record of ``record_type`` with the given fields replaced by raw JSON text."""
    return render([(k, raw.pop(k, v)) for k, v in valid_pairs(record_type)] + list(raw.items()))


def reason_of(record_type: type[Record], payload: bytes | str | None, limits: InputLimits = LIMITS) -> str:
    with pytest.raises(RecordError) as caught:
        decode_record(record_type, payload, limits, now=NOW)
    assert len(str(caught.value)) <= 300 and str(caught.value).isprintable()
    return caught.value.reason


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_every_valid_sample_decodes(record_type: type[Record]) -> None:
    record = decode(record_type, payload_with(record_type))
    assert record == record_type.model_validate(VALID[record_type])


def test_empty() -> None:
    assert reason_of(Interaction, None) == "empty"


def test_oversized() -> None:
    big = payload_with(Interaction, text=json.dumps("a" * 70_000))
    assert reason_of(Interaction, big) == "oversized"
    assert reason_of(Interaction, b"[" * 65_537) == "oversized"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"{not json",
        b'{"user_id": "u"',
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',
        b"\xef\xbb\xbf{}",
        "[" * 5000,
        b'{"ts": ' + b"1" * 5000 + b"}",
        "\ud800",
    ],
    ids=["blank", "spaces", "bad", "unclosed", "not-utf8", "cut-utf8", "bom", "deep", "huge-int", "surrogate"],
)
def test_invalid_json(payload: bytes | str) -> None:
    assert reason_of(Interaction, payload) == "invalid_json"


def test_non_utf8_bytes_are_a_record_error_not_a_unicode_error() -> None:
    good = payload_with(Item, title=json.dumps("Amélie (2001)", ensure_ascii=False))
    assert decode(Item, good) is not None
    assert reason_of(Item, good.decode().encode("latin-1")) == "invalid_json"
    assert reason_of(Item, good.decode().encode("utf-16")) == "invalid_json"


def test_a_duplicated_user_id_is_refused() -> None:
    payload = render([*valid_pairs(Interaction), ("user_id", '"someone-else"')])
    assert reason_of(Interaction, payload) == "duplicate_key"
    escaped = render([*valid_pairs(Interaction), ("user\\u005fid", '"1"')]).replace(b"\\\\", b"\\")
    assert reason_of(Interaction, escaped) == "duplicate_key"  # the same key written with an escape


def test_a_duplicated_key_deep_inside_is_refused() -> None:
    assert reason_of(Item, payload_with(Item, extra='[{"a": {"b": 1, "b": 2}}]')) == "duplicate_key"


@pytest.mark.parametrize(
    "raw",
    [
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '"inf"',
        '"Infinity"',
        '"NaN"',
        '"-inf"',
        '"nan"',
        '"1e400"',
        "-1",
        "-1e-300",
        str(YEAR_50000),
        str(NOW + 86_401),
        "1e12",
        '"1e12"',
    ],
)
@pytest.mark.parametrize("record_type", [Interaction, Impression, Feedback], ids=lambda t: t.__name__)
def test_implausible_ts(record_type: type[Record], raw: str) -> None:
    """A ts that is not finite (1e400 overflows a float; NaN, Infinity and the strings "inf", "NaN" parse as
    non-finite floats), negative, or outside the limits, such as year 50000."""
    assert reason_of(record_type, payload_with(record_type, ts=raw)) == "implausible_ts"


@pytest.mark.parametrize("raw", ['"soon"', "null", "[]", "{}", '""'])
def test_a_ts_that_is_no_number_is_an_invalid_record(raw: str) -> None:
    assert reason_of(Interaction, payload_with(Interaction, ts=raw)) == "invalid_record"


def test_ts_bounds_are_inclusive() -> None:
    limits = InputLimits(max_bytes=65_536, ts_min=1_000.0, ts_max_ahead_s=60.0, rating_min=0.0, rating_max=5.0)
    for ts in (1_000.0, NOW + 60):
        assert decode(Interaction, payload_with(Interaction, ts=json.dumps(ts)), limits) is not None
    for ts in (999.999, NOW + 60.001, 1.0):
        assert reason_of(Interaction, payload_with(Interaction, ts=json.dumps(ts)), limits) == "implausible_ts"


def test_rating_7_on_a_0_to_5_scale_is_out_of_scale() -> None:
    assert reason_of(Interaction, payload_with(Interaction, rating="7")) == "rating_out_of_scale"
    assert reason_of(Interaction, payload_with(Interaction, rating="-0.5")) == "rating_out_of_scale"
    assert reason_of(Interaction, payload_with(Interaction, kind='"click"', rating="7")) == "rating_out_of_scale"
    assert reason_of(Feedback, payload_with(Feedback, value="7")) == "rating_out_of_scale"
    # a click's value is not a rating
    assert decode(Feedback, payload_with(Feedback, kind='"click"', value="7")) is not None
    ten = InputLimits(max_bytes=65_536, ts_min=0.0, ts_max_ahead_s=60.0, rating_min=1.0, rating_max=10.0)
    assert decode(Interaction, payload_with(Interaction, rating="7"), ten) is not None
    assert reason_of(Interaction, payload_with(Interaction, rating="0.5"), ten) == "rating_out_of_scale"


@pytest.mark.parametrize("raw", ["1e400", '"NaN"', "NaN", '"inf"'])
def test_non_finite_floats_elsewhere_are_invalid_records(raw: str) -> None:
    assert reason_of(Interaction, payload_with(Interaction, rating=raw)) == "invalid_record"
    assert reason_of(Feedback, payload_with(Feedback, value=raw)) == "invalid_record"


@pytest.mark.parametrize(
    "user_id",
    ["u\n1", "u1\n", "\nu1", "u 1", "u\x00", "u\u2028", "é", "-u", ".u", "/etc", "", "x" * 129, '"', "u\\1"],
    ids=[
        "newline",
        "trailing-newline",
        "leading-newline",
        "space",
        "nul",
        "line-separator",
        "non-ascii",
        "leading-dash",
        "leading-dot",
        "path",
        "empty",
        "129-chars",
        "quote",
        "backslash",
    ],
)
def test_unsafe_ids_are_invalid_records(user_id: str) -> None:
    assert reason_of(Interaction, payload_with(Interaction, user_id=json.dumps(user_id))) == "invalid_record"
    assert reason_of(Impression, payload_with(Impression, item_ids=json.dumps(["31", user_id]))) == "invalid_record"


@pytest.mark.parametrize(
    "ident",
    [
        "ml-latest-small:1:31:964982703",
        "ml-100k:196:242:881250949",
        uuid.uuid4().hex,
        str(uuid.uuid4()),
        "0123456789abcdef",
        "pair-1-2",
        "p3c",
        "u-dl",
        "r-u1-3",
        "synthetic:7",
        "profile-generator",
        "x" * 128,
        "user@example.org",
        "urn:isbn:0451450523",
        "aGVsbG8=",
        "a_b.c/d+e",
    ],
)
def test_the_ids_this_project_makes_and_reads_are_accepted(ident: str) -> None:
    assert re.fullmatch(ID_PATTERN.strip("^$"), ident)
    payload = payload_with(Interaction, event_id=json.dumps(ident), user_id=json.dumps(ident))
    assert decode(Interaction, payload) is not None


def test_item_years_are_bounded() -> None:
    for year in ("1000", "1902", "2030", "2200", "null"):
        assert decode(Item, payload_with(Item, year=year)) is not None
    for year in ("999", "2201", "50000", "-1", "1995.5", '"1995a"', str(10**30)):
        assert reason_of(Item, payload_with(Item, year=year)) == "invalid_record"


def test_a_detail_never_quotes_much_of_the_payload() -> None:
    key = "k\n" + "x" * 5000
    with pytest.raises(RecordError) as e:
        decode_record(Item, render([*valid_pairs(Item), (key, "1"), (key, "2")]), LIMITS)
    assert e.value.reason == "duplicate_key" and len(str(e.value)) < 100 and "\n" not in str(e.value)


def test_records_refuse_non_finite_floats_when_built_in_code_too() -> None:
    with pytest.raises(ValidationError):
        Interaction(event_id="e", user_id="u", item_id="i", kind="rating", rating=float("nan"), ts=1.0)
    with pytest.raises(ValidationError):
        Feedback(request_id="r", user_id="u", item_id="i", kind="click", ts=float("inf"))


def test_input_limits_are_a_frozen_checked_dataclass() -> None:
    with pytest.raises(ValueError):
        InputLimits(max_bytes=1024, ts_min=0.0, ts_max_ahead_s=60.0, rating_min=5.0, rating_max=1.0)
    with pytest.raises(ValueError):
        InputLimits(max_bytes=1024, ts_min=float("nan"), ts_max_ahead_s=60.0, rating_min=0.0, rating_max=5.0)
    with pytest.raises(AttributeError):
        LIMITS.max_bytes = 1  # type: ignore[misc]


def test_the_default_settings_accept_movielens_and_the_tests_inputs() -> None:
    limits = Settings(_env_file=None).input_limits()
    assert limits == InputLimits(max_bytes=65_536, ts_min=0.0, ts_max_ahead_s=86_400.0, rating_min=0.0, rating_max=5.0)
    # ml-latest-small spans 1996-03-29 .. 2018-09-24 with ratings 0.5 .. 5; MovieLens-100K 1997-98 with 1 .. 5;
    # the worker tests send ts 1e9 + n and the wall clock.
    for ts, rating in ((828_124_615, 0.5), (1_537_799_250, 5.0), (874_724_710, 1.0), (1e9 + 3, 4.0), (NOW, 3.0)):
        payload = payload_with(Interaction, ts=json.dumps(ts), rating=json.dumps(rating))
        assert decode(Interaction, payload, limits) is not None
    assert decode_record(Interaction, payload_with(Interaction, ts=json.dumps(NOW)), limits).ts == NOW  # wall clock
