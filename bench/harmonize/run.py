"""Benchmark of the study-description matcher on MIDRC's real pairs and curated table.

Prints (as Markdown) the numbers reported in bench/RESULTS.md:

* coverage of the 2,520 real (Modality, StudyDescription) pairs and their 233,985 studies,
  by MIDRC's exact matcher and by ours at the chosen threshold;
* 5-fold cross-validation over MIDRC's curated rows (precision, coverage) for both, across
  thresholds; the threshold chosen on the CV folds (lowest with precision >= 0.9), and the
  nested estimate where each fold's threshold is chosen on the other folds only (lowest with
  precision >= 90% there: the estimate), the same with a margin chosen on the other folds only
  (:func:`nested_inner_margin`), and, post hoc, >= 91%.

Usage: .venv/bin/python bench/harmonize/run.py [--pairs StudyDescriptions_Gen3.tsv] [--sample 40]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from radcommons.harmonize import DEFAULT_THRESHOLD, ExactMatcher, Matcher, builtin_table, read_pairs
from radcommons.harmonize.evaluation import (
    Prediction,
    Score,
    choose_threshold,
    coverage,
    cross_validate,
    nested_score,
    score,
)

DEFAULT_PAIRS = Path("/work/shared/ref/midrc-harmonization/StudyDescriptions_Gen3.tsv")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
#: The precision goal of the nested estimate: each fold's threshold is the lowest one reaching it
#: on the other folds. The 90% goal itself; the 91% row is post hoc (chosen after seeing the
#: 90% one fall short on the held-out folds, 89.6% on 2026-12-07) and kept for comparison only.
NESTED_GOAL = 0.9
NESTED_POST_HOC = 0.91
#: Margins over the goal tried by the inner loop of :func:`nested_inner_margin`.
MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)


def nested_inner_margin(predictions: Sequence[Prediction], goal: float = NESTED_GOAL) -> tuple[Score, list[float]]:
    """The nested estimate with the margin over ``goal`` chosen on the training folds only.

    For each held-out fold, the smallest margin of :data:`MARGINS` whose own nested estimate on
    the other folds (each of them held out in turn from the rest) reaches ``goal``; the fold's
    threshold is then the lowest reaching ``goal`` plus that margin on all the other folds. The
    held-out fold is seen only to be scored.
    """
    hidden = answered = correct = 0
    thresholds: list[float] = []
    for fold in sorted({p.fold for p in predictions}):
        others = [p for p in predictions if p.fold != fold]
        target = next(
            (round(goal + m, 2) for m in MARGINS if nested_score(others, round(goal + m, 2))[0].precision >= goal),
            round(goal + MARGINS[-1], 2),
        )
        thresholds.append(choose_threshold(others, target))
        s = score([p for p in predictions if p.fold == fold], thresholds[-1])
        hidden, answered, correct = hidden + s.hidden, answered + s.answered, correct + s.correct
    return Score(float("nan"), hidden, answered, correct), thresholds


def _fit_reason(parsed, catalogue) -> str:
    """Why the structured match (rules.best_fit) leaves a pair with a fitting code to a curator."""
    from radcommons.harmonize.rules import best_fit

    found = best_fit(parsed, catalogue)
    if found is None and parsed.exams > 1:
        return "it joins exams no code names together"
    if found is None:
        return "none fits its contrast, views or purpose"
    tied, fit = found
    if len(tied) > 1:
        return "two or more codes fit alike"
    if fit.kind == "guess":
        return "the code states what the description does not (contrast, views, side, purpose)"
    if fit.kind == "broader":
        return "the code leaves open what the description states"
    return "one code states the same, below 0.90 (such fits were wrong too often on the curated rows)"


def sample_beyond_exact(pairs, ours, exact, size: int, seed: int) -> None:
    """Print ``size`` random pairs answered by us and not by MIDRC's exact matcher: nobody
    curated them, so reading them is the only check of their precision."""
    import random

    beyond = [(p, m) for p, m, e in zip(pairs, ours, exact, strict=True) if m.accepted and not e.accepted]
    random.Random(seed).shuffle(beyond)
    print(f"\n{min(size, len(beyond))} of the {len(beyond)} pairs answered beyond MIDRC's exact matcher (seed {seed}):")
    for pair, match in beyond[:size]:
        print(f"- {pair.modality} | {pair.description} -> {match.long_common_name} ({match.confidence:.2f}, {match.method})")


def unanswered_reasons(pairs, matches, matcher: Matcher) -> dict[str, tuple[int, int]]:
    """Why each pair below the threshold has no answer: is there a code it could have?

    Read from the features the description states (method, body regions, laterality) against
    those of every code in the catalogue.
    """
    from collections import Counter

    from radcommons.harmonize.rules import code_features, features

    catalogue_by_code = {code: code_features(info.long_common_name) for code, info in matcher.codes.items()}
    catalogue = list(catalogue_by_code.values())
    regions = {(f.method, f.regions) for f in catalogue}
    sides = {(f.method, f.regions, f.laterality) for f in catalogue}
    pairs_by, studies_by = Counter(), Counter()
    for pair, match in zip(pairs, matches, strict=True):
        if match.accepted:
            continue
        f = features(pair.description, pair.modality)
        if not f.regions:
            reason = "no body region read from the description"
        elif (f.method, f.regions) not in regions:
            reason = "no code in the catalogue with its method and body region"
        elif (f.method, f.regions, f.laterality) not in sides:
            reason = "no code in the catalogue with its method, body region and laterality"
        else:
            reason = "a code with its method, region and laterality exists: " + _fit_reason(f, catalogue_by_code)
        pairs_by[reason] += 1
        studies_by[reason] += pair.frequency
    return {reason: (n, studies_by[reason]) for reason, n in pairs_by.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="print N random pairs answered beyond MIDRC's exact matcher, to read by eye")
    args = parser.parse_args()
    started = time.perf_counter()
    table = builtin_table()

    predictions = cross_validate(table, k=args.folds, seed=args.seed)
    baseline = cross_validate(table, k=args.folds, seed=args.seed, factory=ExactMatcher)
    chosen = choose_threshold(predictions, 0.9)
    nested = {
        f">= {NESTED_GOAL:.0%} on the other folds": nested_score(predictions, NESTED_GOAL),
        f">= {NESTED_GOAL:.0%} plus a margin chosen on the other folds only": nested_inner_margin(predictions),
        f">= {NESTED_POST_HOC:.0%} on the other folds, post hoc": nested_score(predictions, NESTED_POST_HOC),
    }

    print(f"### Cross-validation ({args.folds}-fold over {len(table.rows)} curated rows, seed {args.seed})\n")
    print("| matcher | threshold | answered / hidden | coverage | precision |")
    print("|---|---|---|---|---|")
    s = score(baseline, 1.0)
    print(f"| MIDRC exact | - | {s.answered} / {s.hidden} | {s.coverage:.1%} | {s.precision:.1%} |")
    for threshold in sorted(set(THRESHOLDS) | {chosen, DEFAULT_THRESHOLD}):
        s = score(predictions, threshold)
        mark = " (chosen on CV)" if threshold == chosen else ""
        mark += " (default)" if threshold == DEFAULT_THRESHOLD else ""
        print(f"| RadCommons | {threshold:.2f}{mark} | {s.answered} / {s.hidden} | {s.coverage:.1%} | {s.precision:.1%} |")
    for label, (s, fold_thresholds) in nested.items():
        print(
            f"| RadCommons, nested ({label}) | per fold "
            f"{', '.join(f'{t:.2f}' for t in fold_thresholds)} | "
            f"{s.answered} / {s.hidden} | {s.coverage:.1%} | {s.precision:.1%} |"
        )

    pairs_file = read_pairs(args.pairs)
    pairs = pairs_file.pairs
    exact = ExactMatcher(table)
    exact_matches = [exact.match(p.modality, p.description) for p in pairs]
    exact_cov = coverage(pairs, exact_matches)
    matcher = Matcher(table, threshold=DEFAULT_THRESHOLD)
    ours = matcher.match_all([(p.modality, p.description) for p in pairs])
    ours_cov = coverage(pairs, ours)
    print(f"\n### Real pairs ({args.pairs.name}: {ours_cov.pairs} pairs, {ours_cov.studies} studies)\n")
    print("| matcher | pairs mapped | share of pairs | studies mapped | share of studies |")
    print("|---|---|---|---|---|")
    for name, c in (("MIDRC exact", exact_cov), (f"RadCommons (threshold {DEFAULT_THRESHOLD})", ours_cov)):
        print(f"| {name} | {c.answered_pairs} | {c.pair_share:.1%} | {c.answered_studies} | {c.study_share:.1%} |")
    print("\nRadCommons answers by method: " + ", ".join(
        f"{method} {n} pairs / {studies} studies" for method, (n, studies) in sorted(ours_cov.by_method.items())
    ))
    print("\n\nUnanswered pairs by why (pairs / studies):")
    for reason, (n, studies) in unanswered_reasons(pairs, ours, matcher).items():
        print(f"- {reason}: {n} / {studies}")
    for threshold in (0.5, 0.7, 0.8):
        c = coverage(pairs, [m.__class__(**{**m.__dict__, "accepted": m.confidence >= threshold and bool(m.code)}) for m in ours])
        print(f"\nAt threshold {threshold}: {c.pair_share:.1%} of pairs, {c.study_share:.1%} of studies.", end="")
    if args.sample:
        sample_beyond_exact(pairs, ours, exact_matches, args.sample, args.seed)
    print(f"\n\n(run time {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
