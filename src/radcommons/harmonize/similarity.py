"""TF-IDF cosine similarity over a few hundred short documents, without scikit-learn.

The matcher ranks a description against curated descriptions and code names with TF-IDF
(word and character n-gram). scikit-learn's ``TfidfVectorizer`` computes exactly that, but
importing scikit-learn costs about 2.5 s, which every ``radcommons ingest`` and server process
paid on its first study. :class:`TfidfIndex` computes the same weights (sublinear tf,
smoothed idf, l2 norm: ``TfidfVectorizer(sublinear_tf=True, norm="l2")``) with an inverted
index in plain Python and NumPy; ``tests/harmonize`` checks it against scikit-learn.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

Analyzer = Callable[[str], Sequence[str]]

_SPACE = re.compile(r"\s\s+")


def char_wb_ngrams(text: str, low: int = 3, high: int = 4) -> list[str]:
    """Character n-grams inside word boundaries, padded with a space (scikit-learn's ``char_wb``)."""
    out: list[str] = []
    for word in _SPACE.sub(" ", text).split():
        padded = " " + word + " "
        size = len(padded)
        for n in range(low, high + 1):
            offset = 0
            out.append(padded[offset : offset + n])
            while offset + n < size:
                offset += 1
                out.append(padded[offset : offset + n])
            if offset == 0:  # a short word counts once
                break
    return out


class TfidfIndex:
    """Documents as l2-normalised TF-IDF vectors, queried by cosine similarity."""

    def __init__(self, analyzer: Analyzer, documents: Sequence[str]) -> None:
        self.analyzer = analyzer
        self.size = len(documents)
        counts = [Counter(analyzer(document)) for document in documents]
        frequency: Counter[str] = Counter()
        for count in counts:
            frequency.update(count.keys())
        self.idf = {term: math.log((1 + self.size) / (1 + df)) + 1 for term, df in frequency.items()}
        postings: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for doc, count in enumerate(counts):
            for term, weight in self._weights(count).items():
                docs, weights = postings[term]
                docs.append(doc)
                weights.append(weight)
        self._postings = {
            term: (np.array(docs, dtype=np.intp), np.array(weights)) for term, (docs, weights) in postings.items()
        }

    def _weights(self, count: Counter[str]) -> dict[str, float]:
        weights = {term: (1 + math.log(n)) * self.idf[term] for term, n in count.items() if term in self.idf}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {term: w / norm for term, w in weights.items()} if norm else {}

    def scores(self, text: str) -> np.ndarray:
        """Cosine similarity of ``text`` to every document (terms never seen in them are ignored)."""
        out = np.zeros(self.size)
        for term, weight in self._weights(Counter(self.analyzer(text))).items():
            docs, weights = self._postings[term]
            out[docs] += weight * weights
        return out
