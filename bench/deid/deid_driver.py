"""Run pydicom/deid with its default recipe over a folder tree, writing every output.

Why a driver: the ``deid identifiers --action all`` CLI writes outputs flat, named by the
input's base name (``IM00001.dcm`` from every series collides) and needs the output
folder to exist. This script does what that CLI does -- ``get_identifiers`` then
``replace_identifiers`` with the default recipe (``deid/data/deid.dicom``, CLI defaults:
private tags kept, sequences not stripped) -- one file at a time, and saves each result
under DST with the input's relative path.

Run with the peers' interpreter: ``bench/.venv-peers/bin/python bench/deid/deid_driver.py SRC DST``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: deid_driver.py SRC DST", file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    os.environ.setdefault("MESSAGELEVEL", "QUIET")
    logging.disable(logging.WARNING)
    from deid.dicom.header import get_identifiers, replace_identifiers

    files = sorted(p for p in src.rglob("*") if p.is_file() and p.name != "corpus.json")
    failed = 0
    for path in files:
        name = str(path)
        try:
            ids = get_identifiers([name])
            (ds,) = replace_identifiers(dicom_files=[name], ids=ids, save=False)
            out = dst / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out)
        except Exception as error:  # record and go on, like the other tools do
            failed += 1
            print(f"deid_driver: {path}: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"deid_driver: {len(files) - failed} written, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
