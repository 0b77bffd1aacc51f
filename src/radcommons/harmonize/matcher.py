"""The study-description matcher: (Modality, StudyDescription) -> LOINC code, with a confidence.

Answers come from the first of these that has one, each tagged with the ``method`` that
produced it and a ``rule`` saying how:

1. ``decision``: a curator's stored decision for the pair (always wins, confidence 1).
2. ``exact``: MIDRC's own match (case and space normalised, CR/DX and PT/CT aliased).
3. ``normalized``: the same canonical words as a curated row (abbreviations, punctuation,
   contrast phrases and word order normalised).
4. ``rules``: the method, body region, views, portable, laterality, purpose and contrast read
   from the description equal those of curated rows (which vote), and the structured match:
   the code whose own long common name states the description's attributes best
   (:func:`~radcommons.harmonize.rules.best_fit`), weighted by how often that kind of fit
   named the curated code on the matcher's own curated rows; two codes fitting alike share
   the weight unless the curated rows with the same features pick one, and a code that states
   what the description does not is only a suggestion.
5. ``similarity``: TF-IDF cosine similarity to curated descriptions and code names, ranked.

The confidence of 3-5 is calibrated so that answers at or above the default threshold are
right at least 90% of the time in 5-fold cross-validation over MIDRC's curated table (see
``bench/harmonize``). Answers below the threshold keep their suggestion for the review queue.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radcommons.harmonize.confidence import DEFAULT_THRESHOLD, Calibration
from radcommons.harmonize.normalize import (
    canonical_text,
    midrc_key,
    modality_groups,
    normalize_space_case,
)
from radcommons.harmonize.rules import Features, Fit, best_fit, code_features, contradicts, features
from radcommons.harmonize.similarity import TfidfIndex, char_wb_ngrams
from radcommons.harmonize.tables import CodeInfo, MappingTable

#: The most a structured fit that guesses an attribute weighs (see Matcher._structured).
GUESS_WEIGHT = 0.5

METHODS = ("decision", "exact", "normalized", "rules", "similarity", "none")


@dataclass(frozen=True)
class Decision:
    """A curator's decision for one pair; an empty ``code`` means "no code applies"."""

    modality: str
    description: str
    code: str
    long_common_name: str = ""
    curator: str = ""
    note: str = ""


@dataclass(frozen=True)
class Match:
    """The matcher's answer for one pair.

    ``code`` is the best suggestion even when it is not ``accepted`` (confidence below the
    threshold): the review queue shows it to the curator.
    """

    modality: str
    description: str
    code: str
    long_common_name: str
    confidence: float
    method: str
    rule: str
    accepted: bool
    info: CodeInfo | None = None

    @property
    def answer(self) -> str:
        """The code when accepted, else the empty string (what ``harmonize map`` writes)."""
        return self.code if self.accepted else ""


_RANK = {"decision": 0, "exact": 1, "normalized": 2, "rules": 3, "similarity": 4}


@dataclass(frozen=True)
class Evidence:
    """One source's vote for a code, with how much it is worth (0..1)."""

    code: str
    weight: float
    method: str
    rule: str


def _vote(codes: Iterable[str]) -> tuple[str, int, int]:
    """Majority code (ties go to the latest row, the newest curation), its votes and the total."""
    listed = list(codes)
    counts = Counter(listed)
    best = max(counts.values())
    winner = next(c for c in reversed(listed) if counts[c] == best)
    return winner, best, len(listed)


def _compatible(row_groups: frozenset[str], groups: frozenset[str]) -> bool:
    return not row_groups or not groups or bool(row_groups & groups)


def _votes(hits: Sequence[str], many: float, one: float, method: str, template: str) -> list[Evidence]:
    """Evidence from curated rows' codes: the majority for, each minority code against.

    ``many``/``one`` are the weights of a unanimous vote of several rows / of one row.
    """
    if not hits:
        return []
    counts = Counter(hits)
    total = len(hits)
    code, votes, _ = _vote(hits)
    base = many if total >= 2 else one
    out = [Evidence(code, base * votes / total, method, template.format(votes=votes, total=total))]
    for other, n in counts.items():
        if other != code:
            out.append(Evidence(other, base * n / total, method, template.format(votes=n, total=total)))
    return out


@dataclass(frozen=True)
class _Derived:
    """Indexes of the curated rows by canonical words and by features, and each code's features."""

    canonical: dict[tuple[str, str], list[str]]
    signature: dict[tuple[str, Features], list[tuple[str, str]]]  # (description key, code)
    code_features: dict[str, Features]


@dataclass(frozen=True)
class _Similarity:
    """TF-IDF indexes of the documents (curated descriptions, then code names) and what each is."""

    words: TfidfIndex
    chars: TfidfIndex
    codes: list[str]
    groups: list[frozenset[str]]
    kinds: list[str]

    @functools.cached_property
    def is_name(self) -> np.ndarray:
        return np.array([kind == "name" for kind in self.kinds])


def _canonical_words(text: str) -> list[str]:
    return canonical_text(text).split()


def _char_ngrams(text: str) -> list[str]:
    return char_wb_ngrams(normalize_space_case(text), 3, 4)


def _fit_class(parsed: Features, fit: Fit, tied: Sequence[str], hits: Sequence[str]) -> tuple[str, ...]:
    """The class a structured fit is calibrated in, most general part first.

    The method family, the fit's kind (:attr:`Fit.kind`), whether codes tie, whether the
    description states what the family's codes tell apart (contrast for CT and MR, views or
    projections for radiographs), and whether the curated rows with the same features
    (``hits``) name the fitted code. A class seen on few rows borrows from the one above it
    (:class:`~radcommons.harmonize.confidence.Calibration`).
    """
    if parsed.method == "XR":
        # Chest and abdomen radiographs have many codes told apart by projections and portable;
        # the skeleton's are told apart by side and view count.
        family = "XR chest/abdomen" if parsed.regions & {"CHEST", "ABDOMEN"} else "XR other"
        stated = "views" if parsed.views or parsed.projections else "no views"
    elif parsed.method in ("CT", "MR"):
        family, stated = "CT/MR", "contrast" if parsed.contrast else "no contrast"
    else:
        family, stated = "other", ""
    if not hits:
        rows = "no curated row with these features"
    elif all(code in tied for code in hits):
        rows = "curated rows with these features agree"
    elif any(code in tied for code in hits):
        rows = "curated rows with these features split"
    else:
        rows = "curated rows with these features name another code"
    if len(tied) == 1:
        tie = "unique"
    else:
        tie = "tied, broken by curated rows" if len(_resolve_tie(tied, hits)) == 1 else "tied"
    return (family, fit.kind, tie, stated, rows)


def _resolve_tie(tied: Sequence[str], hits: Sequence[str]) -> tuple[str, ...]:
    """The codes a structured fit answers: the tied code most of the curated rows with the same
    features name, when one is; else all the tied codes (which then share the weight)."""
    if len(tied) == 1:
        return tuple(tied)
    votes = Counter(code for code in hits if code in tied)
    ranked = votes.most_common(2)
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        return (ranked[0][0],)
    return tuple(tied)


def _uninformative(description: str) -> bool:
    return not any(ch.isalpha() for ch in description.replace("NONE", "").replace("none", ""))


class Matcher:
    """Map (Modality, StudyDescription) pairs to codes with a curated table.

    ``Matcher(table, decisions=[...])``: decisions override every other answer.
    """

    def __init__(
        self,
        table: MappingTable,
        decisions: Iterable[Decision] = (),
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.table = table
        self.threshold = threshold
        self.codes = dict(table.codes)
        self._decisions: dict[tuple[str, str], Decision] = {}
        for decision in decisions:
            for key in self._keys(decision.modality, decision.description):
                self._decisions[key] = decision
        # MIDRC's exact index: (alias group or "" for any modality, normalised description).
        # Built now because it is cheap and answers most studies; the other indexes are built
        # on the first pair it cannot answer (see _derived and _similarity_index).
        self._exact: dict[tuple[str, str], list[str]] = defaultdict(list)
        for row in table.rows:
            for key in self._keys(row.modality, row.description):
                self._exact[key].append(row.code)
        self._masks: dict[str, np.ndarray] = {}
        self._scores: dict[str, np.ndarray] = {}

    # -- indexes ------------------------------------------------------------------------

    @staticmethod
    def _keys(modality: str, description: str) -> list[tuple[str, str]]:
        groups, text = midrc_key(modality, description)
        return [(group, text) for group in sorted(groups)] or [("", text)]

    @functools.cached_property
    def _derived(self) -> _Derived:
        """The normalised-words and rules indexes (built on the first pair exact cannot answer)."""
        derived = _Derived(defaultdict(list), defaultdict(list), {})
        for row in self.table.rows:
            canonical = canonical_text(row.description) if row.description else ""
            parsed = features(row.description, row.modality)
            for group in sorted(modality_groups(row.modality)) or [""]:
                if canonical:
                    derived.canonical[(group, canonical)].append(row.code)
                if parsed.informative:
                    derived.signature[(group, parsed)].append((midrc_key("", row.description)[1], row.code))
        derived.code_features.update(
            (code, code_features(info.long_common_name)) for code, info in self.table.codes.items()
        )
        return derived

    @property
    def _code_features(self) -> dict[str, Features]:
        return self._derived.code_features

    @functools.cached_property
    def _similarity_index(self) -> _Similarity:
        """TF-IDF over curated descriptions and code names (built on first use)."""
        documents: list[str] = []
        codes: list[str] = []
        groups: list[frozenset[str]] = []
        kinds: list[str] = []
        for row in self.table.rows:
            if row.description:
                documents.append(row.description)
                codes.append(row.code)
                groups.append(modality_groups(row.modality))
                kinds.append("row")
        for code, info in self.table.codes.items():
            if info.long_common_name:
                documents.append(info.long_common_name)
                codes.append(code)
                groups.append(frozenset())
                kinds.append("name")
        return _Similarity(
            words=TfidfIndex(_canonical_words, documents),
            chars=TfidfIndex(_char_ngrams, documents),
            codes=codes,
            groups=groups,
            kinds=kinds,
        )

    # -- matching -----------------------------------------------------------------------

    def _make(
        self, modality: str, description: str, code: str, confidence: float, method: str, rule: str
    ) -> Match:
        info = self.codes.get(code)
        return Match(
            modality=modality,
            description=description,
            code=code,
            long_common_name=info.long_common_name if info else "",
            confidence=round(float(confidence), 3),
            method=method,
            rule=rule,
            accepted=confidence >= self.threshold and bool(code),
            info=info,
        )

    def _lookup(self, index: dict, keys: list, skip: Callable[[Any], bool] | None = None) -> list:
        """Entries for the first keys that hit; a row naming the modality beats a blank one.

        ``skip`` drops entries before that choice, so a modality whose only row is skipped
        falls back to the blank rows as it would without that row.
        """
        def found(lookup_keys: Iterable) -> list:
            hits = [entry for key in lookup_keys for entry in index.get(key, ())]
            return [entry for entry in hits if not skip(entry)] if skip else hits

        return found(keys) or found(dict.fromkeys(("",) + tuple(key[1:]) for key in keys))

    def match(self, modality: str, description: str) -> Match:
        """The best answer for one pair (see the module docstring for the order)."""
        keys = self._keys(modality, description)
        for key in keys + [("", key[1]) for key in keys]:
            decision = self._decisions.get(key)
            if decision is not None:
                if decision.long_common_name and decision.code not in self.codes:
                    self.codes[decision.code] = CodeInfo(decision.code, decision.long_common_name)
                match = self._make(modality, description, decision.code, 1.0, "decision",
                                   f"curator decision{': ' + decision.curator if decision.curator else ''}")
                return match if decision.code else Match(
                    modality, description, "", "", 1.0, "decision", "curator: no code applies", True
                )
        hits = self._lookup(self._exact, keys)
        if hits:
            code, votes, total = _vote(hits)
            return self._make(modality, description, code, 1.0 if votes == total else 0.95, "exact",
                              "MIDRC exact match" + ("" if votes == total else f" ({votes}/{total} rows agree)"))
        groups = sorted(modality_groups(modality)) or [""]
        parsed = features(description, modality)
        evidence: list[Evidence] = []
        canonical = canonical_text(description)
        if canonical:
            evidence.extend(self._normalized(groups, canonical))
        if parsed.informative:
            evidence.extend(self._rules(parsed, groups))
        evidence.extend(self._similarity(modality, description, parsed))
        if not evidence and _uninformative(description):
            evidence.extend(self._unspecified(parsed))
        if not evidence:
            return Match(modality, description, "", "", 0.0, "none", "no candidate", False)
        return self._combine(modality, description, evidence)

    def _combine(self, modality: str, description: str, evidence: list[Evidence]) -> Match:
        """Pool the evidence per code: agreeing sources add up, a disagreeing one subtracts.

        Support is a noisy-OR of the agreeing methods' weights (within one method only the
        strongest counts: its sources read the same words); the strongest vote for another code
        scales it down, so a pair the sources disagree on lands in the review queue.
        """
        # Within one method the sources read the same words (the curated rows that share a
        # description's features, and the code whose name states them): the strongest counts.
        strongest: dict[tuple[str, str], float] = {}
        for item in evidence:
            key = (item.code, item.method)
            strongest[key] = max(strongest.get(key, 0.0), item.weight)
        support: dict[str, float] = {}
        for (code, _), weight in strongest.items():
            support[code] = 1 - (1 - support.get(code, 0.0)) * (1 - weight)
        code = max(support, key=lambda c: (support[c], -min(_RANK[e.method] for e in evidence if e.code == c)))
        against = max((e.weight for e in evidence if e.code != code), default=0.0)
        confidence = support[code] * (1 - 0.5 * against)
        mine = sorted((e for e in evidence if e.code == code), key=lambda e: (_RANK[e.method], -e.weight))
        rule = "; ".join(e.rule for e in mine)
        if against >= 0.005:  # what rounds to 0.00 is not worth saying
            rule += f"; against: {against:.2f}"
        return self._make(modality, description, code, confidence, mine[0].method, rule)

    def _unspecified(self, parsed: Features) -> list[Evidence]:
        """A blank description ("", "<NONE>") gets its method's "Unspecified body region" code."""
        for code, info in self.codes.items():
            name = info.long_common_name.upper()
            if "UNSPECIFIED BODY REGION" in name and not name.startswith("PORTABLE"):
                if self._code_features[code].method == parsed.method and parsed.method:
                    return [Evidence(code, 0.85, "rules", "blank description: the method's unspecified-region code")]
        return []

    def _normalized(self, groups: list[str], canonical: str) -> list[Evidence]:
        hits = self._lookup(self._derived.canonical, [(g, canonical) for g in groups])
        # One curated row with the same words is good evidence; several agreeing ones better.
        return _votes(hits, 0.95, 0.8, "normalized", f"same words as {{votes}}/{{total}} curated row(s) [{canonical}]")

    def _rules(self, parsed: Features, groups: list[str]) -> list[Evidence]:
        hits = self._signature_codes(parsed, groups)
        votes = _votes(hits, 0.8, 0.55, "rules", "same method/region/views/contrast as {votes}/{total} curated row(s)")
        structured = self._structured(parsed, hits)
        if structured:
            # The structured fit's class says whether these rows agree with it, and its weight
            # is calibrated on that: their minority votes against it would count the split
            # twice. Their majority (votes[0]) stays, fitted or not: 28 of 30 rows naming the PE
            # study outweigh a code name that states "CTA Chest vessels" alike.
            fitted = {item.code for item in structured}
            votes = [item for i, item in enumerate(votes) if i == 0 or item.code in fitted]
        return votes + structured

    def _signature_codes(self, parsed: Features, groups: Sequence[str], leave_out: str = "") -> list[str]:
        """Codes of the curated rows with the same features (but description ``leave_out``)."""
        rows = self._lookup(self._derived.signature, [(g, parsed) for g in groups],
                            skip=(lambda row: row[0] == leave_out) if leave_out else None)
        return [code for _, code in rows]

    def _structured(self, parsed: Features, hits: Sequence[str]) -> list[Evidence]:
        """The code whose own name states the description's features best (:func:`best_fit`).

        Its weight is the precision this kind of fit had on the curated rows
        (:attr:`_calibration`), the kind including whether the curated rows with the same
        features name it too; codes that fit equally well, and that those rows do not tell
        apart (:func:`_resolve_tie`), share the evidence and vote against each other, so an
        ambiguous description stays below the threshold.
        """
        found = best_fit(parsed, self._code_features)
        if found is None:
            return []
        tied, fit = found
        key = _fit_class(parsed, fit, tied, hits)
        calibration = self._calibration
        rule = (f"code name states the description's method/region and {fit.same} attribute(s) alike, "
                f"{fit.broader} left open, {fit.guessed} guessed; {key[-1]} "
                f"({calibration.describe(key)})")
        if len(tied) > 1:
            rule += f", tied with {len(tied) - 1} other code(s)"
        weight = calibration.weight(key)
        if fit.kind == "guess":
            # The code states what the description does not: a suggestion for a curator, however
            # often such guesses were right on the curated rows.
            weight = min(weight, GUESS_WEIGHT)
        # Codes still tied after the curated rows' votes split the weight evenly.
        answered = _resolve_tie(tied, hits)
        return [Evidence(code, weight / len(answered), "rules", rule) for code in answered]

    @functools.cached_property
    def _calibration(self) -> Calibration:
        """How often each kind of structured fit named the curated code, over this table's rows.

        A code only one curated description names (and no attribute file lists) is left out of
        the catalogue while that row is counted, as it would be unknown without the row: the
        count then sees what a new description meets.
        """
        named: dict[str, set[str]] = defaultdict(set)
        for row in self.table.rows:
            named[row.code].add(midrc_key(row.modality, row.description)[1])
        listed = {info.code for info in self.table.attributes}
        calibration = Calibration()
        fits: dict[tuple[Features, str], tuple[tuple[str, ...], Fit] | None] = {}  # rows repeat features
        for row in self.table.rows:
            parsed = features(row.description, row.modality)
            if not row.description or not parsed.informative:
                continue
            unknown = row.code if row.code not in listed and len(named[row.code]) == 1 else ""
            if (parsed, unknown) not in fits:
                candidates = {c: f for c, f in self._code_features.items() if c != unknown}
                fits[(parsed, unknown)] = best_fit(parsed, candidates)
            found = fits[(parsed, unknown)]
            if found is None:
                continue
            tied, fit = found
            groups = sorted(modality_groups(row.modality)) or [""]
            hits = self._signature_codes(parsed, groups, leave_out=midrc_key("", row.description)[1])
            answered = _resolve_tie(tied, hits)
            # Right when the answer is the curated code; codes left tied count as one answer
            # whose weight they share.
            calibration.add(_fit_class(parsed, fit, tied, hits), row.code in answered)
        return calibration

    def _similarity(self, modality: str, description: str, parsed: Features) -> list[Evidence]:
        index = self._similarity_index
        if not index.codes or not description.strip():
            return []
        scores = self._scores.get(description)
        if scores is None:
            scores = self._similarities([description])[0]
        scores = np.where(self._mask(modality), scores, -1.0)
        # Equal scores (to rounding): a curated description before a code name, and the latest
        # curated row first (as in _vote: the newest curation wins a tie).
        order = np.lexsort((-np.arange(len(scores)), index.is_name, -np.round(scores, 9)))[:20]
        ranked = [
            int(i) for i in order
            if scores[i] > 0 and not contradicts(parsed, self._code_features.get(index.codes[i], parsed))
        ]
        if not ranked:
            return []
        best = ranked[0]
        code = index.codes[best]
        runner_up = next((float(scores[i]) for i in ranked[1:] if index.codes[i] != code), 0.0)
        margin = float(scores[best]) - runner_up
        kind = index.kinds[best]
        if kind == "row":
            weight = min(float(scores[best]) * 0.4 + min(margin, 0.2), 0.6)
        else:
            # A code's name is written unlike a site's description: weaker evidence.
            weight = min(float(scores[best]) * 0.2 + min(margin, 0.2) * 0.5, 0.4)
        return [Evidence(code, weight, "similarity",
                         f"cosine {scores[best]:.2f} to a curated {'description' if kind == 'row' else 'code name'}"
                         f" (margin {margin:.2f})")]

    def _similarities(self, descriptions: Sequence[str]) -> np.ndarray:
        """Cosine scores (descriptions x documents): 0.6 word TF-IDF + 0.4 character 3-4-grams."""
        index = self._similarity_index
        return np.array([0.6 * index.words.scores(d) + 0.4 * index.chars.scores(d) for d in descriptions])

    def _mask(self, modality: str) -> np.ndarray:
        """Documents whose modality fits (cached: a table has few distinct modalities)."""
        mask = self._masks.get(modality)
        if mask is None:
            groups = modality_groups(modality)
            mask = np.array([_compatible(g, groups) for g in self._similarity_index.groups], dtype=bool)
            self._masks[modality] = mask
        return mask

    def match_all(self, pairs: Iterable[tuple[str, str]]) -> list[Match]:
        """:meth:`match` for many (modality, description) pairs, ranking similarity in one batch."""
        listed = list(pairs)
        todo = sorted({d for _, d in listed if d.strip()} - set(self._scores))
        if todo and self._similarity_index.codes:
            for description, row in zip(todo, self._similarities(todo), strict=True):
                self._scores[description] = row
        try:
            return [self.match(modality, description) for modality, description in listed]
        finally:
            self._scores.clear()


def exact_matcher(table: MappingTable) -> ExactMatcher:
    """MIDRC's matcher (the baseline): exact after case/space normalisation, CR/DX and PT/CT aliased."""
    return ExactMatcher(table)


class ExactMatcher:
    """MIDRC's own matcher, for comparison: answers only exact (normalised) hits."""

    def __init__(self, table: MappingTable) -> None:
        self._matcher = Matcher(table)

    def match(self, modality: str, description: str) -> Match:
        """The exact answer, or no answer."""
        keys = Matcher._keys(modality, description)
        hits = self._matcher._lookup(self._matcher._exact, keys)
        if not hits:
            return Match(modality, description, "", "", 0.0, "none", "no exact match", False)
        code, _, _ = _vote(hits)
        return self._matcher._make(modality, description, code, 1.0, "exact", "MIDRC exact match")
