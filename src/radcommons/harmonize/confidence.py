"""The confidence a study-code answer needs to be given without a curator."""

from __future__ import annotations

#: Answers below this confidence go to the review queue (chosen on the CV folds; see bench).
DEFAULT_THRESHOLD = 0.9
