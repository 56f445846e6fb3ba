"""The soak tells caches filling up to their bounds from a leak: the RSS net of the caches' bytes."""

from __future__ import annotations

from bench.soak import RSS_SLOPE_LIMIT_MB_PER_MIN, net_of, second_half, slope_per_min


def test_caches_filling_explain_an_rss_slope_that_a_leak_does_not() -> None:
    caches = [(t * 10.0, min(64.0, t * 0.8)) for t in range(60)]  # 4.8 MB/min, capped at 64 MB after 13 min
    rss = [(t, 900.0 + c + (3.0 if int(t) % 30 == 0 else 0.0)) for t, c in caches]  # noise on top
    leak = [(t, v + t / 60 * 3.0) for t, v in rss]  # 3 MB/min that no cache holds
    assert slope_per_min(second_half(rss)) > RSS_SLOPE_LIMIT_MB_PER_MIN
    assert abs(slope_per_min(second_half(net_of(rss, caches)))) < RSS_SLOPE_LIMIT_MB_PER_MIN
    assert slope_per_min(second_half(net_of(leak, caches))) > RSS_SLOPE_LIMIT_MB_PER_MIN
