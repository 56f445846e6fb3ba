"""The soak benchmark's lag verdict: spiky but steady lag is bounded; a growing backlog, however slowly it grows,
and a plateau far behind the input are not."""

from __future__ import annotations

from bench.soak import lag_bounded, lag_growth, slope_per_min

RATE = 100.0  # interactions/s sent


def test_spiky_steady_lag_is_bounded_even_when_its_second_half_slopes_up() -> None:
    # commits every few seconds: lag swings between 0 and ~1200 messages, a late spike gives a positive slope
    series = [(t * 10.0, 0.0 if t % 3 else 1200.0) for t in range(30)] + [(300.0, 1150.0), (310.0, 1190.0)]
    assert slope_per_min(series[len(series) // 2 :]) > 0.01 * RATE  # what the old slope test called unbounded
    assert lag_bounded(series, RATE)


def test_a_warm_up_backlog_that_drains_then_stays_low_is_bounded() -> None:
    warm_up = [(t * 10.0, 3000.0 - t * 500.0) for t in range(6)]  # 30 s of input behind, drained in a minute
    steady = [(t * 10.0, 200.0 if t % 2 else 50.0) for t in range(6, 60)]
    assert lag_bounded(warm_up + steady, RATE)


def test_a_growing_backlog_is_not_bounded() -> None:
    series = [(t * 10.0, t * 10.0 * RATE * 0.2) for t in range(60)]  # 20 % of the input left behind
    assert not lag_bounded(series, RATE)


def test_a_backlog_that_starts_growing_late_and_slowly_is_not_bounded() -> None:
    # flat at a few messages for five minutes, then 9 s of input behind by the end: its median stays under the
    # level bound and its peak is what one spike could be, so only the trend shows it
    series = [(t * 10.0, 5.0) for t in range(30)] + [(t * 10.0, (t - 30) / 30 * 9 * RATE) for t in range(30, 60)]
    assert lag_growth(series) > 5 * RATE
    assert not lag_bounded(series, RATE)


def test_a_spiky_backlog_that_grows_is_not_bounded_though_its_spikes_hide_the_trend_from_peaks() -> None:
    # the same spikes every 30 s on top of a backlog growing by 3 % of the input (9 s of input over the half)
    series = [(t * 10.0, t * 10.0 * RATE * 0.03 + (1200.0 if t % 3 == 0 else 0.0)) for t in range(60)]
    assert not lag_bounded(series, RATE)


def test_a_steady_plateau_far_behind_the_input_is_not_bounded() -> None:
    series = [(t * 10.0, 30 * RATE + (100.0 if t % 2 else 0.0)) for t in range(60)]  # 30 s of input behind
    assert not lag_bounded(series, RATE)
