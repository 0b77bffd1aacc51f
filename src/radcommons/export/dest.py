"""The folder an export is written or downloaded into (DEST): new, empty, or the same export's.

Shared by the operator's ``radcommons export`` (:mod:`radcommons.pipelines.export`) and the
researcher's download of a server-made export (:mod:`radcommons.client.research`): a folder
that holds other files, or another export, is refused before anything is written there, so an
export never overwrites a user's files nor mixes its files with another export's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radcommons.durable import remove_partials, write_atomic
from radcommons.errors import UserError

#: Written first into DEST: what the export is (selection, format, options, recipient), so the
#: same command run again resumes it there and any other export or file is never mixed in.
EXPORT_MARK = ".radcommons-export.json"
#: The same for a download of a server-made export (``radcommons download --format``).
DOWNLOAD_MARK = ".radcommons-download.json"
_NEW_FOLDER = "give a new or empty folder as DEST (the same command run again resumes an export in its folder)"


def check_dest(dest: Path) -> None:
    """DEST must be a folder or not exist yet (whether it may be written is :func:`claim_dest`)."""
    if not str(dest).strip() or str(dest) == ".":
        raise UserError("DEST is empty or the current folder", _NEW_FOLDER)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder", "give a new or existing folder as DEST")


def check_claim(dest: Path, settings: Mapping[str, Any] | None = None, *, mark: str = EXPORT_MARK) -> bool:
    """Whether ``dest`` may become the folder of the export ``settings`` describes, without writing
    anything: False for a new or empty folder, True for the folder of the same export (to resume);
    :class:`UserError` for anything else. ``settings`` None: any export of this kind may resume."""
    check_dest(dest)
    if not (dest.is_dir() and any(dest.iterdir())):
        return False
    try:
        earlier = json.loads((dest / mark).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{dest} is not empty and holds no RadCommons export: its files would be overwritten "
                        "or mixed with the export's", _NEW_FOLDER) from None
    except (OSError, ValueError) as error:
        raise UserError(f"{dest / mark} cannot be read ({error})", _NEW_FOLDER) from None
    wanted = _plain(settings) if settings is not None else earlier
    if earlier != wanted:
        earlier = earlier if isinstance(earlier, dict) else {}
        differ = sorted(k for k in wanted.keys() | earlier.keys() if earlier.get(k) != wanted.get(k))
        raise UserError(f"{dest} holds an export made with other settings ({', '.join(differ)}): the two "
                        "would be mixed", _NEW_FOLDER)
    return True


def claim_dest(dest: Path, settings: Mapping[str, Any], *, mark: str = EXPORT_MARK) -> None:
    """Make ``dest`` the folder of the export ``settings`` describes: a new or empty folder gets
    its ``mark``; a folder with the same mark is resumed (files already there are kept; the
    temporary files a killed run left are removed); anything else is refused, before anything
    is written: files of another export (other options, another query) would stay beside the
    new ones, and files that are no export (a README.md, labels.csv) would be overwritten.
    The caller holds ``dest`` (:func:`radcommons.durable.folder_held`): no other run writes there."""
    if check_claim(dest, settings, mark=mark):
        remove_partials(dest)
        return
    dest.mkdir(parents=True, exist_ok=True)
    write_atomic(dest / mark, json.dumps(_plain(settings), sort_keys=True, indent=1).encode())


def _plain(settings: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))
