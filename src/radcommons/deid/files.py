"""De-identifying one file: read, decide, de-identify, write (or say why not)."""

from __future__ import annotations

import warnings
from pathlib import Path

from radcommons.deid.engine import (
    DEIDENTIFIED,
    REJECTED,
    WITHHELD,
    DeidContext,
    DeidOutcome,
    clean_pixels,
    deidentify_dataset,
    pixel_review,
    required_uids_problem,
    unsupported_reason,
)
from radcommons.deid.fileio import (
    BadInput,
    OutputWriteError,
    PendingWrites,
    read_full,
    read_header,
    write_streamed,
    write_whole,
)
from radcommons.deid.outcome import PYDICOM, STREAM, FileOutcome, output_relpath
from radcommons.deid.streamed import deidentify_streamed
from radcommons.deid.uids import new_uid
from radcommons.dicom.elements import PIXEL_TAGS, NotPlain
from radcommons.inputs import stat_input, unreadable


def deidentify_file(
    src: Path,
    dst_root: Path,
    context: DeidContext,
    *,
    label: str | None = None,
    pending: PendingWrites | None = None,
    keep_existing: bool = True,
) -> FileOutcome:
    """De-identify the file ``src`` into ``dst_root`` (never raises for bad input).

    A file that cannot be read or used is an outcome (rejected, withheld, with the reason); a
    destination that cannot take the output (a full disk, read-only, an I/O error) is not: it
    raises :class:`~radcommons.deid.fileio.OutputWriteError`, naming ``dst_root``, and nothing
    is left under the output's final name.

    The output path is computed from the header before anything is written; when that
    file is already there (a resumed run: outputs only ever appear complete, through
    ``os.replace``) it is not written again, unless ``keep_existing`` is false (the source
    changed since: :func:`radcommons.deid.tree.deidentify_tree` knows, and publishes the new
    output in place of the old one). With ``pending`` the output is left as a
    finished temporary file for the caller to sync and publish with its batch
    (:meth:`PendingWrites.commit`); without, it is synced and published before returning.
    """
    src = src if isinstance(src, Path) else Path(src)
    name = label if label is not None else str(src)
    dst_root = dst_root if isinstance(dst_root, Path) else Path(dst_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on every odd value; the report speaks
        try:
            return _deidentify_file(src, name, dst_root, context, pending, keep_existing)
        except OutputWriteError as error:
            raise error.within(dst_root) from error.error


def _deidentify_file(
    src: Path, name: str, dst_root: Path, context: DeidContext, pending: PendingWrites | None, keep_existing: bool
) -> FileOutcome:
    problem = stat_input(src)
    if isinstance(problem, str):
        return FileOutcome(name, REJECTED, problem)
    why, failure = "", ""
    if context.fast_paths:
        try:
            outcome = deidentify_streamed(src, dst_root, context, label=name, pending=pending,
                                          keep_existing=keep_existing)
            outcome.route = STREAM
            return outcome
        except NotPlain as reason:
            why = str(reason)
        except OSError as error:  # the source cannot be read: the pydicom path tries again and says so
            why = unreadable(error)
        except BadInput as error:  # the source failed under the pixel copy (unreadable, shrank): the input's doing
            why = str(error)
        except RecursionError:  # thousands of nested sequences: the input's doing, not a fault to report
            why = "sequences nested too deeply for the streamed path"
        except OutputWriteError:  # the destination's failure: the pydicom path would fail on it too
            raise
        except Exception as error:  # noqa: BLE001 - a fault of the fast path: the pydicom path decides, the report tells
            why = failure = f"the streamed path failed: {type(error).__name__}: {error}"
    outcome = _pydicom_path(src, name, dst_root, context, pending, keep_existing)
    outcome.route, outcome.why_pydicom, outcome.stream_failure = PYDICOM, why, failure
    return outcome


def _pydicom_path(
    src: Path, name: str, dst_root: Path, context: DeidContext, pending: PendingWrites | None, keep_existing: bool
) -> FileOutcome:
    try:
        header = read_header(src)
    except BadInput as error:
        return FileOutcome(name, REJECTED, str(error))
    ds = header.dataset
    try:
        problem = required_uids_problem(ds)
        if problem:
            return FileOutcome(name, REJECTED, problem)
        reason = unsupported_reason(ds)
        if reason:
            return FileOutcome(name, WITHHELD, reason)
        relpath = output_relpath(
            new_uid(context.key, ds.StudyInstanceUID),
            new_uid(context.key, ds.SeriesInstanceUID),
            new_uid(context.key, ds.SOPInstanceUID),
        )
        target = Path(dst_root) / relpath
        needs_pixels = False
        why = ""
        if context.review_pixels:
            needs_pixels, why = pixel_review(ds)
        if needs_pixels or not header.streamable:
            full = read_full(src, header)
            cleaned, regions = False, ()
            if needs_pixels:
                if not any(tag in full for tag in PIXEL_TAGS):  # Pixel Data, Float or Double Float Pixel Data
                    return FileOutcome(name, WITHHELD, f"pixels need review ({why}) but Pixel Data is absent")
                cleaned, withheld, regions = clean_pixels(full)
                if withheld:
                    return FileOutcome(name, WITHHELD, f"burned-in text: {withheld}", pixel_regions=regions)
            outcome = deidentify_dataset(full, context, pixels_cleaned=cleaned, pixel_regions=regions)
            if outcome.status != DEIDENTIFIED:
                return _from_outcome(name, outcome, None)
            if not (keep_existing and target.exists()):
                meta = getattr(full, "file_meta", None)
                ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
                write_whole(target, full, ts or header.transfer_syntax, pending)
                return _from_outcome(name, outcome, relpath)
            result = _from_outcome(name, outcome, relpath)
            result.skipped_existing = True
            return result
        outcome = deidentify_dataset(ds, context, pixels_cleaned=False)
        if outcome.status != DEIDENTIFIED:
            return _from_outcome(name, outcome, None)
        result = _from_outcome(name, outcome, relpath)
        if keep_existing and target.exists():
            result.skipped_existing = True
        else:
            write_streamed(target, ds, header, src, pending, fast=context.fast_paths)
        return result
    except BadInput as error:
        return FileOutcome(name, REJECTED, str(error))
    except OutputWriteError:  # not the input's doing: the caller stops (a full disk fails every file)
        raise
    except Exception as error:  # a bad value deep in a header: report, never a traceback
        return FileOutcome(name, REJECTED, f"corrupt: {type(error).__name__}: {error}")


def _from_outcome(name: str, outcome: DeidOutcome, relpath: str | None) -> FileOutcome:
    return FileOutcome(
        input=name,
        status=outcome.status,
        reason=outcome.reason,
        output=relpath if outcome.status == DEIDENTIFIED else None,
        patient=outcome.patient,
        study=outcome.study,
        pixels_cleaned=outcome.pixels_cleaned,
        pixel_regions=outcome.pixel_regions,
    )


__all__ = ["FileOutcome", "deidentify_file", "output_relpath"]
