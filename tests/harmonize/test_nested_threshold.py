"""The nested estimates of bench/harmonize/run.py on MIDRC's curated table: each fold's
threshold, and the margin over the 90% goal, are chosen on the other folds only."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from radcommons.harmonize import builtin_table
from radcommons.harmonize.evaluation import Prediction, choose_threshold, cross_validate

RUN = Path(__file__).resolve().parents[2] / "bench" / "harmonize" / "run.py"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harmonize_bench_run", RUN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def predictions() -> list[Prediction]:
    return cross_validate(builtin_table())


def test_the_held_out_fold_is_only_scored(run: ModuleType, predictions: list[Prediction]) -> None:
    # Every answer of fold 0 made wrong: its threshold (and margin) must not move, its score
    # must (the other folds' thresholds may: fold 0 is among their training folds).
    wrong = [
        dataclasses.replace(p, row=dataclasses.replace(p.row, code="no such code")) if p.fold == 0 else p
        for p in predictions
    ]
    before, thresholds = run.nested_inner_margin(predictions)
    after, thresholds_wrong = run.nested_inner_margin(wrong)
    assert thresholds_wrong[0] == thresholds[0]
    assert after.correct < before.correct


def test_the_margin_is_never_below_the_goal(run: ModuleType, predictions: list[Prediction]) -> None:
    _, thresholds = run.nested_inner_margin(predictions)
    for fold, threshold in enumerate(thresholds):
        others = [p for p in predictions if p.fold != fold]
        assert threshold >= choose_threshold(others, run.NESTED_GOAL), fold
