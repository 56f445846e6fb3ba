"""The soak benchmark's lag verdict: spiky but steady lag is bounded, a growing backlog is not."""

from __future__ import annotations

from bench.soak import lag_bounded, slope_per_min


def test_spiky_steady_lag_is_bounded_even_when_its_second_half_slopes_up() -> None:
    # commits every few seconds: lag swings between 0 and ~1200 messages, a late spike gives a positive slope
    series = [(t * 10.0, 0.0 if t % 3 else 1200.0) for t in range(30)] + [(300.0, 1150.0), (310.0, 1190.0)]
    rate = 100.0
    assert slope_per_min(series[len(series) // 2 :]) > 0.01 * rate  # what the old slope test called unbounded
    assert lag_bounded(series, rate)


def test_a_growing_backlog_is_not_bounded() -> None:
    rate = 100.0
    series = [(t * 10.0, t * 10.0 * rate * 0.2) for t in range(60)]  # 20 % of the input left behind
    assert not lag_bounded(series, rate)
