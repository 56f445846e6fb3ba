"""The worker's in-process caches are bounded in bytes (lettingo.byte_lru): what they hold never passes the bound,
a full cache forgets its least recently used entry one at a time (never everything at once), and a hit returns
what a miss computed. The encoder and the reader run the real sentence model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lettingo.byte_lru import ENTRY_OVERHEAD, ByteLRU, size_of
from lettingo.data import load_dataset, split_dataset
from lettingo.recommenders import EmbeddingReader, RankingQuery, TextEncoder
from lettingo.recommenders.encoder import EMBEDDING_DIM, _key
from lettingo.recommenders.history_text import genre_profile, titles_profile
from streams.runtime import Runtime
from streams.settings import StreamSettings

VECTOR = size_of("0" * 40) + size_of(np.zeros(EMBEDDING_DIM, dtype=np.float32)) + ENTRY_OVERHEAD  # one text's


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 300), st.booleans()), max_size=80), st.integers(1, 2000))
def test_the_bytes_never_pass_the_bound_and_the_least_recently_used_goes_first(
    ops: list[tuple[int, int, bool]], bound: int
) -> None:
    cache: ByteLRU[int, bytes] = ByteLRU(bound)
    order: list[int] = []  # least recently used first, as a model of the cache
    sizes: dict[int, int] = {}
    for key, length, read in ops:
        if read:
            if key in order:
                order.remove(key)
                order.append(key)
                assert cache.get(key) == b"x" * sizes[key]
            else:
                assert cache.get(key) is None
            continue
        cache.put(key, b"x" * length)
        if key in order:
            order.remove(key)
        size = size_of(key) + size_of(b"x" * length) + ENTRY_OVERHEAD
        sizes[key] = length
        if size <= bound:
            order.append(key)
            while sum(size_of(k) + size_of(b"x" * sizes[k]) + ENTRY_OVERHEAD for k in order) > bound:
                order.pop(0)  # one at a time, oldest first
        assert cache.bytes <= bound
        assert list(cache._data) == order


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 300)), max_size=40),
    st.integers(1, 4000),
    st.integers(0, 4000),
    st.integers(0, 300),
)
def test_a_resize_evicts_the_least_recently_used_down_to_the_new_bound_and_usage_counts_what_stays(
    puts: list[tuple[int, int]], bound: int, new_bound: int, later: int
) -> None:
    cache: ByteLRU[int, bytes] = ByteLRU(bound)
    lengths: dict[int, int] = {}
    for key, length in puts:
        cache.put(key, b"x" * length)
        lengths[key] = length

    def size(key: int) -> int:
        return size_of(key) + size_of(b"x" * lengths[key]) + ENTRY_OVERHEAD

    before, evictions = list(cache._data), cache.evictions
    cache.resize(new_bound)
    kept = list(cache._data)
    assert cache.max_bytes == new_bound
    assert kept == before[len(before) - len(kept) :]  # the most recently used stay, in their order
    assert cache.usage() == (len(kept), sum(size(k) for k in kept)) and cache.usage()[1] <= new_bound
    assert cache.evictions - evictions == len(before) - len(kept)
    if len(kept) < len(before):  # one at a time, only until the bound holds: the last one evicted did not fit
        assert cache.usage()[1] + size(before[len(before) - len(kept) - 1]) > new_bound
    cache.put(-1, b"x" * later)  # later puts keep to the new bound
    assert cache.usage()[1] <= new_bound


def test_a_full_encoder_forgets_one_vector_at_a_time_and_a_hit_returns_the_first_vector() -> None:
    encoder = TextEncoder(max_memory_bytes=4 * VECTOR)
    texts = [f"a profile about film number {n}" for n in range(6)]
    first = encoder.encode(texts[:4])
    assert encoder.text_vectors.usage() == (4, 4 * VECTOR)
    encoder.encode(texts[:1])  # a hit makes the first text the most recently used
    encoder.encode(texts[4:5])  # full: the least recently used (texts[1]) goes, and only it
    assert [k in encoder.text_vectors for k in map(_key, texts)] == [True, False, True, True, True, False]
    assert encoder.text_vectors.usage()[1] <= encoder.text_vectors.max_bytes
    again = encoder.encode(texts[:4])  # texts[1] is encoded again, the others are hits
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert np.array_equal(again[[0, 2, 3]], first[[0, 2, 3]])  # hits: the very vectors the misses computed
    assert encoder.text_vectors.usage()[1] <= encoder.text_vectors.max_bytes


def test_a_batch_larger_than_the_encoder_cache_is_encoded_whole() -> None:
    encoder = TextEncoder(max_memory_bytes=2 * VECTOR)
    texts = [f"one of many texts, number {n}" for n in range(5)]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, EMBEDDING_DIM) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert encoder.text_vectors.usage() == (2, 2 * VECTOR)


def test_the_reader_profile_cache_stays_under_its_bound_and_scores_as_an_unbounded_one(
    frozen_reader: Path, dataset_path: Path
) -> None:
    ds = load_dataset(dataset_path)
    split = split_dataset(ds)
    cache = frozen_reader.parents[1] / "cache"
    unbounded = EmbeddingReader.load(frozen_reader, ds, TextEncoder(cache))
    unbounded.profile_vectors.resize(2**30)
    bounded = EmbeddingReader.load(frozen_reader, ds, TextEncoder(cache))
    queries = []
    for n, case in enumerate(split.cases(ds, "test")[:12]):
        profile = (titles_profile if n % 2 else genre_profile)(case.long_history, ds.items)
        queries.append(RankingQuery(profile, case.recent, (case.target.item_id,)))
    unbounded.prepare([q.profile for q in queries], [])
    one = max(size_of(q.profile) + size_of(unbounded.profile_vectors[q.profile]) for q in queries) + ENTRY_OVERHEAD
    bounded.profile_vectors.resize(3 * one)  # a few profiles: a batch of twelve passes it
    for block in (queries, queries[:4], queries[::-1]):
        expected = unbounded.score_batch("ranking", block)
        got = bounded.score_batch("ranking", block)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        entries, used = bounded.profile_vectors.usage()
        assert 0 < entries < len(queries) and used <= bounded.profile_vectors.max_bytes


def test_the_runtime_reports_each_cache_with_the_bound_its_setting_gives() -> None:
    runtime = Runtime(StreamSettings(cache={"sent_pairs_mib": 3}))
    assert runtime.caches() == {"sent_pairs": (0, 0, 3 * 2**20)}
