"""The nested estimate of bench/harmonize/run.py on MIDRC's curated table: a threshold chosen on
four folds, measured on the fifth, meets the 90% precision goal only with a margin."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from radcommons.harmonize import builtin_table
from radcommons.harmonize.evaluation import Prediction, choose_threshold, cross_validate, nested_score, score

RUN = Path(__file__).resolve().parents[2] / "bench" / "harmonize" / "run.py"


def _nested_target() -> float:
    spec = importlib.util.spec_from_file_location("harmonize_bench_run", RUN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NESTED_TARGET


@pytest.fixture(scope="module")
def predictions() -> list[Prediction]:
    return cross_validate(builtin_table())


def test_the_lowest_threshold_just_reaching_the_goal_sits_on_the_training_folds_luck(
    predictions: list[Prediction],
) -> None:
    # Each fold's threshold chosen at >= 90% on the other folds barely reaches it there: the
    # precision curve is flat near 90%, so the lowest threshold over it is where noise lifts it.
    for fold in range(5):
        others = [p for p in predictions if p.fold != fold]
        in_sample = score(others, choose_threshold(others, 0.9)).precision
        assert 0.9 <= in_sample < 0.91, (fold, in_sample)


def test_a_margin_meets_the_goal_on_the_held_out_folds(predictions: list[Prediction]) -> None:
    target = _nested_target()
    assert target > 0.9
    nested, thresholds = nested_score(predictions, target)
    assert nested.precision >= 0.9, (nested, thresholds)
