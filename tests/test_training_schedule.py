"""The stopping rule and learning-rate schedule that book adaptation trains with (training.schedule)."""

from __future__ import annotations

import pytest

from training.schedule import EarlyStopping, cosine_learning_rate, run_progress


def test_no_early_stop_before_the_minimum_steps_however_bad_the_epochs():
    rule = EarlyStopping(patience=2, min_steps=100)
    for step, cer in ((20, 0.02), (40, 0.03), (60, 0.04), (80, 0.05)):
        rule.update(cer)
        assert not rule.should_stop(step)
    rule.update(0.05)
    assert rule.should_stop(100)


def test_one_lucky_epoch_does_not_become_the_best_when_smoothed():
    cers = [0.030, 0.018, 0.030, 0.029, 0.028]   # epoch 2 is noise on a small held-out slice
    raw, smoothed = EarlyStopping(patience=2), EarlyStopping(patience=2, smoothing=0.5)
    raw_best = [raw.update(c) for c in cers]
    smoothed_best = [smoothed.update(c) for c in cers]
    assert raw_best == [True, True, False, False, False] and raw.should_stop(0)
    # The smoothed values are 0.030, 0.024, 0.027, 0.028, 0.028: the lucky 0.018 counts only half, and later
    # epochs are compared with 0.024, not with it.
    assert smoothed_best[:2] == [True, True] and smoothed.best == pytest.approx(0.024)
    assert smoothed.smoothed == pytest.approx(0.5 * (0.5 * (0.5 * 0.024 + 0.015) + 0.0145) + 0.014)


def test_the_stopping_rule_survives_a_resume():
    rule = EarlyStopping(patience=3, min_steps=10, smoothing=0.6)
    rule.update(0.05)
    rule.update(0.06)
    again = EarlyStopping.from_dict(rule.to_dict())
    assert again == rule and again.since_best == 1


def test_cosine_warms_up_peaks_and_ends_at_the_floor():
    peak = 3e-4
    assert cosine_learning_rate(peak, 0.0, warmup=0.1) == pytest.approx(peak * 0.01)
    assert cosine_learning_rate(peak, 0.05, warmup=0.1) == pytest.approx(peak / 2)
    assert cosine_learning_rate(peak, 0.1, warmup=0.1) == pytest.approx(peak)
    assert cosine_learning_rate(peak, 0.55, warmup=0.1) == pytest.approx(peak * (0.05 + 0.95 * 0.5))
    assert cosine_learning_rate(peak, 1.0, warmup=0.1) == pytest.approx(peak * 0.05)
    assert cosine_learning_rate(peak, 1.7) == pytest.approx(peak * 0.05)
    rates = [cosine_learning_rate(peak, i / 100, warmup=0.1) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_the_budget_that_ends_the_run_drives_the_schedule():
    assert run_progress(step=100, max_steps=400, seconds=300, budget_seconds=600) == 0.5   # time runs out first
    assert run_progress(step=300, max_steps=400, seconds=60, budget_seconds=600) == 0.75
    assert run_progress(step=300, max_steps=0, seconds=60, budget_seconds=None) == 0.0
