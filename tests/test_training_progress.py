"""Progress of a training or tuning run: share done, time left, whole-number trial ticks."""

from __future__ import annotations

import pytest

from singtalk.model_plots import plot_trials
from singtalk.training import run_fraction, time_left


def epoch(i, of=10, t=None, trial=None):
    event = {"kind": "epoch", "epoch": i, "epochs": of, "t": t}
    return event if trial is None else {**event, "trial": trial}


def test_fraction_of_a_training_and_of_a_search():
    assert run_fraction(epoch(5)) == 0.5
    assert run_fraction(epoch(5, trial=2), trials=4) == pytest.approx((1 + 0.5) / 4)
    assert run_fraction(epoch(10, trial=4), trials=4) == 1.0


def test_time_left_from_the_pace_of_the_epochs():
    events = [{"kind": "stage", "t": 0.0}] + [epoch(i, t=20.0 + 2 * i) for i in range(1, 5)]  # TF loaded in 20 s
    assert time_left(events) == pytest.approx(12.0), "6 epochs at 2 s, the loading time left out"
    search = [epoch(i, of=5, t=float(i), trial=1) for i in range(1, 6)]
    assert time_left(search, trials=3) == pytest.approx(10.0), "two more trials of 5 epochs at 1 s"
    assert time_left(events[:2]) is None, "one epoch: no pace yet"


def test_trial_ticks_are_whole_numbers():
    fig = plot_trials([{"score": 1.0 / i, "hyperparameters": {"units": 8}} for i in range(1, 4)])
    axis = fig.layout.xaxis
    assert (axis.tickmode, axis.tick0, axis.dtick, axis.tickformat) == ("linear", 1, 1, "d")
    many = plot_trials([{"score": 1.0, "hyperparameters": {}} for _ in range(35)])
    assert many.layout.xaxis.dtick == 4
