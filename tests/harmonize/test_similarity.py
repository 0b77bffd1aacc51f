"""The matcher's own TF-IDF equals scikit-learn's, and building the matcher stays cheap."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from radcommons.harmonize import builtin_table
from radcommons.harmonize.matcher import _canonical_words
from radcommons.harmonize.normalize import normalize_space_case
from radcommons.harmonize.similarity import TfidfIndex, char_wb_ngrams

QUERIES = ["XR CHEST 1 VIEW AP", "MRI SHOULDER WO, RT", "ct abd/pel w contrast", "", "zzz", "CHEST CHEST CHEST"]


def documents() -> list[str]:
    table = builtin_table()
    return [r.description for r in table.rows if r.description] + [i.long_common_name for i in table.codes.values()]


def test_tfidf_equals_scikit_learn() -> None:
    docs = documents()
    for analyzer, vectorizer in (
        (_canonical_words, TfidfVectorizer(analyzer=_canonical_words, sublinear_tf=True, norm="l2")),
        (lambda t: char_wb_ngrams(normalize_space_case(t), 3, 4),
         TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True,
                         preprocessor=normalize_space_case)),
    ):
        index = TfidfIndex(analyzer, docs)
        matrix = vectorizer.fit_transform(docs)
        expected = (vectorizer.transform(QUERIES) @ matrix.T).toarray()
        mine = np.array([index.scores(q) for q in QUERIES])
        assert np.allclose(mine, expected, atol=1e-12), np.abs(mine - expected).max()
        assert mine[0].max() > 0.5  # not trivially zero


def test_matching_never_imports_scikit_learn() -> None:
    # scikit-learn took 2.5 s to import in every ingest and server process.
    code = (
        "import sys\n"
        "from radcommons.harmonize.study_codes import builtin_matcher\n"
        "m = builtin_matcher()\n"
        "assert m.match('MR', 'MRI SHOULDER WO, RT').method != 'exact'\n"
        "assert m.match_all([('CT', 'ct abd/pel w contrast')])[0].code\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('sklearn', 'scipy')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
