"""Thin, dependency-free wrapper around the Tesseract OCR command-line tool.

Used by :mod:`radcommons.deid.pixels` to find and re-check burned-in text
(PS3.15 E.3.2 Clean Pixel Data Option). We call the ``tesseract`` binary
(Debian package ``tesseract-ocr``) directly instead of pytesseract: one less
dependency, and the image goes in on stdin as a binary PGM so no temp files
and no Pillow are needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OcrError",
    "OcrRequest",
    "OcrWord",
    "TESSERACT_MISSING",
    "ocr_many",
    "ocr_words",
    "tesseract_path",
]

TESSERACT_MISSING = "OCR engine (tesseract) not installed: install Debian package tesseract-ocr"

#: Seconds one tesseract run may take; a 1024x768 frame takes ~0.3 s.
DEFAULT_TIMEOUT_S = 30.0


class OcrError(RuntimeError):
    """Tesseract is missing, failed or timed out (message is user-facing)."""


@dataclass(frozen=True)
class OcrWord:
    """One word from Tesseract's TSV output; box in the coordinates of the OCR image."""

    text: str
    conf: float
    left: int
    top: int
    width: int
    height: int
    line_key: tuple[int, int, int]  # (block, paragraph, line) as numbered by Tesseract

    @property
    def n_alnum(self) -> int:
        return sum(ch.isalnum() for ch in self.text)


@dataclass(frozen=True)
class OcrRequest:
    """One OCR pass: an 8-bit greyscale image and a page segmentation mode."""

    image: np.ndarray
    psm: int = 11


def tesseract_path() -> str | None:
    """Return the tesseract executable found on PATH, or None."""
    return shutil.which("tesseract")


def _pgm_bytes(img: np.ndarray) -> bytes:
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError("OCR image must be a 2-D uint8 array")
    rows, cols = img.shape
    return f"P5 {cols} {rows} 255\n".encode("ascii") + np.ascontiguousarray(img).tobytes()


def _parse_tsv(tsv: str) -> list[OcrWord]:
    words: list[OcrWord] = []
    for line in tsv.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != 12 or parts[0] != "5":  # level 5 = word
            continue
        text = parts[11].strip()
        if not text:
            continue
        try:
            conf = float(parts[10])
            left, top, width, height = (int(p) for p in parts[6:10])
            key = (int(parts[2]), int(parts[3]), int(parts[4]))
        except ValueError:
            continue
        words.append(OcrWord(text, conf, left, top, width, height, key))
    return words


def ocr_words(img: np.ndarray, psm: int = 11, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[OcrWord]:
    """Run ``tesseract stdin stdout --psm N tsv`` on an 8-bit image and return its words.

    Raises :class:`OcrError` (never a bare subprocess/OS error) when the engine is
    missing, exits non-zero or exceeds ``timeout`` seconds.
    """
    exe = tesseract_path()
    if exe is None:
        raise OcrError(TESSERACT_MISSING)
    # One OpenMP thread per process: for small images Tesseract's threading costs
    # more than it gains (measured 0.9 s -> 0.3 s per 1024x768 frame), and we run
    # several passes in parallel processes instead.
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        proc = subprocess.run(
            [exe, "stdin", "stdout", "--psm", str(psm), "tsv"],
            input=_pgm_bytes(img),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrError(f"OCR engine (tesseract) timed out after {timeout:.0f} s") from exc
    except OSError as exc:  # e.g. removed between which() and exec, or not executable
        raise OcrError(f"OCR engine (tesseract) could not be started: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        raise OcrError(f"OCR engine (tesseract) failed with exit code {proc.returncode}: {tail}")
    return _parse_tsv(proc.stdout.decode("utf-8", "replace"))


def ocr_many(
    requests: Sequence[OcrRequest], *, timeout: float = DEFAULT_TIMEOUT_S
) -> list[list[OcrWord]]:
    """Run several OCR passes concurrently (one tesseract process each), results in order."""
    if not requests:
        return []
    with ThreadPoolExecutor(max_workers=min(len(requests), os.cpu_count() or 1, 4)) as pool:
        futures = [pool.submit(ocr_words, r.image, r.psm, timeout=timeout) for r in requests]
        return [f.result() for f in futures]
