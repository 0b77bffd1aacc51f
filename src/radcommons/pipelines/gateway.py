"""The DIMSE gateway: a PACS sends studies (C-STORE), they leave de-identified, study by study.

* C-ECHO and C-STORE SCP (pynetdicom) for the common storage SOP classes, in every
  transfer syntax pynetdicom knows; an association must call the gateway's AE title, and
  with an allow list (:class:`Peer`) only the listed peers may store: anything stored here
  leaves under the site's name;
* each instance is received into a file of ``receiving/`` (never decoded into memory: a 1 GB
  multi-frame instance costs a few MB more than an idle gateway), de-identified from it on
  arrival (:func:`radcommons.deid.deidentify_file`, the site's key and registry) and written
  atomically (temporary file, fsync, rename) to ``spool/<study uid>/<series uid>/<sop
  uid>.dcm`` **before** the C-STORE success is returned, so an acknowledged instance
  survives a crash or restart; an instance that cannot be de-identified is refused
  (status 0x0110) and logged with the reason in the private event log. The received file
  (identified) goes once answered; what an aborted association left goes when it ends, and
  what a crash left at the next start;
* an instance sent again (same UIDs, corrected or not) replaces the copy in the spool: the
  latest received copy wins, as the PACS user who sent it again means, and the event log
  says ``replaced`` (and whether the content changed). Sent again after its study was
  uploaded, it starts a new upload of the study (a new version at the commons);
* a study is complete when nothing arrived for it during the quiet period; it is then
  packaged and sent with the same code as ``radcommons contribute``
  (:func:`radcommons.pipelines.contribute_upload.deliver`: resumable, nothing sent twice)
  and moved to ``done/`` once the commons returned its receipt. A study whose upload
  fails stays in the spool and is tried again later. The commons takes a study's manifest
  as the whole study, so a round declares the instances it received with those the commons
  holds of the study already (its latest version: sent by an earlier round, by ``radcommons
  contribute``, or by anything else of the site) that none of them replaces; their bytes
  are not sent again (:func:`whole_study`). The round declares the version it read as the
  study's base; should another sender (``radcommons contribute``, another gateway) make a new
  version of the study before the round's commit, the commons leaves that study as it is
  (``changed_since_read`` in the receipt) and the study stays in the spool: the next round reads
  the new version and sends the study again with its instances. Refused again, the study waits
  longer before each new try (:meth:`Gateway.changed_delay`: twice the check interval, doubled
  with each consecutive refusal, 5 minutes at most) while the spool's other studies go as they
  complete, and from the :data:`REFUSALS_TO_WARN`-th consecutive refusal on the gateway says what
  to check (``study_keeps_changing``). The count and wait are kept in memory: a restart forgets
  them, and costs at most a few quick tries before the study waits again.

Everything lives under ``<state dir>/gateway``; the spool holds only de-identified files.
"""

from __future__ import annotations

import datetime as _dt
import filecmp
import ipaddress
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pydicom

from radcommons.client import CHANGED_SINCE_READ, CommonsClient, ManifestEntry, NotFoundError, file_sha256
from radcommons.deid import DEIDENTIFIED, DeidContext, Registry, deidentify_file, key_fingerprint, make_state_dir
from radcommons.deid.fileio import OutputWriteError, PendingWrites
from radcommons.deid.outcome import output_relpath
from radcommons.durable import fsync_dir, private_opener, remove_if_present, remove_partials, sync_paths, write_atomic
from radcommons.errors import UserError
from radcommons.listening import listen_error
from radcommons.pipelines.contribute_upload import (
    Delivery,
    PackagedFile,
    StudyPackage,
    UploadJournal,
    deliver,
    target_key,
)

#: DIMSE statuses.
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NOT_AUTHORIZED = 0x0124  #: PS3.7 C.4.1.1.x "Refused: Not Authorized"
CANNOT_UNDERSTAND = 0xC000  #: PS3.4 Table B.2-1, C-STORE "Error: Cannot understand"
OUT_OF_RESOURCES = 0xA700
#: Seconds a stopping gateway lets open associations end by themselves before it aborts them.
STOP_GRACE = 10.0
#: Seconds a connection may take to send its A-ASSOCIATE-RQ before the gateway closes it: pynetdicom's
#: ACSE timeout, which on an acceptor is both its wait for the request and the ARTIM timer started on
#: the transport connection (PS3.8 9.1.5, state machine action AE-5; Evt18 -> AA-2 closes it). Its
#: default, 30 s, kept a thread per bare connection: a load balancer's health check every few seconds
#: piled them up. A peer sends its request as soon as it connects; the timer also bounds the wait for
#: a peer to close the connection after its release is answered (Sta13), which it does at once.
ASSOCIATE_WAIT = 10.0
#: A-ASSOCIATE-AC presentation context result (PS3.8 Table 9-18): abstract syntax not supported.
_ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03

#: The largest P-DATA-TF PDU the gateway receives (PS3.8 9.3.5, its A-ASSOCIATE-AC Maximum Length):
#: pynetdicom reads a whole PDU into memory. With no limit (0) a sender may put a whole instance in
#: one PDU (pynetdicom's own SCU does, when its peer sets none): 100 MB of it took 400 MB. Large
#: enough that a PDU costs little next to its bytes.
MAX_PDU = 1 << 20

#: The longest wait between two tries: of a round that failed, and of a study the commons refused.
MAX_WAIT = 300.0
#: Consecutive ``changed_since_read`` refusals of one study from which the gateway says what to check.
REFUSALS_TO_WARN = 4


@dataclass(frozen=True)
class Peer:
    """A sender the gateway accepts: a calling AE title, a network, or both (both must match)."""

    ae_title: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``PACS1``, ``10.0.0.0/8``, ``192.0.2.7`` or ``PACS1@192.0.2.0/24``; ValueError says what is wrong."""
        title, at, address = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "")
        if not at and _looks_like_address(title):
            title, address = "", title
        network = None
        if address:
            try:
                network = ipaddress.ip_network(address.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{address.strip()!r} is not an IP address or network") from None
        title = title.strip()
        if title and (len(title) > 16 or "\\" in title or not title.isprintable()):
            raise ValueError(f"{title!r} is not an AE title (1 to 16 characters, no backslash)")
        if not title and network is None:
            raise ValueError("an empty peer")
        return cls(title or None, network)

    def admits(self, ae_title: str, address: str) -> bool:
        if self.ae_title is not None and ae_title.strip() != self.ae_title:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(address) in self.network
            except ValueError:
                return False
        return True

    def __str__(self) -> str:
        return "@".join(part for part in (self.ae_title, str(self.network) if self.network else None) if part)


def _looks_like_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return True

#: ``send(packages) -> Delivery``: how complete studies leave (None: keep them in the spool).
Sender = Callable[[Sequence[StudyPackage]], Delivery]


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway listens and where it keeps its state."""

    ae_title: str
    port: int
    context: DeidContext
    state_dir: Path
    host: str = "0.0.0.0"
    quiet_seconds: float = 30.0
    check_seconds: float = 2.0
    #: seconds a connection may take to request an association (:data:`ASSOCIATE_WAIT`)
    associate_seconds: float = ASSOCIATE_WAIT
    #: who may echo and store (empty: every peer that calls the gateway's AE title)
    allowed: tuple[Peer, ...] = ()

    @property
    def root(self) -> Path:
        return self.state_dir / "gateway"


class Spool:
    """The gateway's durable folders: ``spool/`` (arriving), ``done/`` (sent), ``events.jsonl``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.spool = self.root / "spool"
        self.done = self.root / "done"
        #: what arrives, as received (identified): one file per instance being received or de-identified
        self.receiving = self.root / "receiving"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.done.mkdir(parents=True, exist_ok=True)
        self.receiving.mkdir(mode=0o700, exist_ok=True)
        remove_partials(self.spool)  # a crash mid-write leaves only *.partial files, never half outputs
        self.clear_receiving()
        self._lock = threading.Lock()
        #: held while a file takes its place in the spool or leaves it for done/
        self._files_lock = threading.Lock()

    def put(self, target: Path, written: Path) -> dict[str, str]:
        """Move ``written`` (a finished de-identified file, under a temporary name in ``target``'s
        folder) over ``target`` in the spool, durably: the latest received copy wins. Returns what
        it replaced (empty: nothing), for the log: ``previous_copy`` (``spool``, or ``sent`` when the
        study was uploaded with an earlier copy; that one is replaced in done/ when this one is
        sent) and ``content`` (changed or identical).

        The de-identifier's own publishing keeps the first file of a name (two files of one export
        with one SOP Instance UID); here its temporary file is renamed over the target."""
        try:
            sync_paths([str(written)], [], each=True)  # on disk before the PACS is told it is stored
            with self._files_lock:
                sent = self.done / target.relative_to(self.spool)
                previous = target if target.exists() else sent if sent.exists() else None
                replaced = {} if previous is None else {
                    "previous_copy": "spool" if previous == target else "sent",
                    "content": "identical" if filecmp.cmp(previous, written, shallow=False) else "changed"}
                os.replace(written, target)
        except BaseException:
            remove_if_present(written)
            raise
        fsync_dir(str(target.parent))
        return replaced

    def clear_receiving(self) -> None:
        """Delete what a crash or an aborted association left in ``receiving/``: instances as the PACS
        sent them, never acknowledged (the PACS sends them again), that must not stay on disk."""
        for leftover in self.receiving.iterdir():
            remove_if_present(leftover)

    def log(self, event: str, **fields: Any) -> None:
        """Append one line to the private event log (it may name original files and reasons)."""
        line = json.dumps({"time": _dt.datetime.now(_dt.timezone.utc).isoformat(), "event": event, **fields})
        with self._lock, open(self.root / "events.jsonl", "a", encoding="utf-8", opener=private_opener) as handle:
            handle.write(line + "\n")

    def studies(self) -> list[Path]:
        return sorted(p for p in self.spool.iterdir() if p.is_dir())

    @staticmethod
    def last_arrival(study: Path) -> float:
        """When the newest file of the study was written (its mtime)."""
        times = [p.stat().st_mtime for p in study.rglob("*.dcm")]
        return max(times, default=study.stat().st_mtime)

    def complete(self, quiet_seconds: float, now: float | None = None) -> list[Path]:
        """Studies that received nothing for ``quiet_seconds``."""
        now = time.time() if now is None else now
        return [s for s in self.studies() if now - self.last_arrival(s) >= quiet_seconds and any(s.rglob("*.dcm"))]

    def package(self, study: Path) -> StudyPackage:
        """The instances of the study in the spool (what the commons lacks of the study is completed
        by the sender: :func:`whole_study`).

        Each file is packaged as a snapshot: a second name of the file as it is now
        (:func:`_sending`), so that a copy the PACS sends again meanwhile, renamed over the first
        name, is neither read by the upload under the earlier copy's digest (the commons refused
        those bytes, and the round failed) nor taken for sent by :meth:`finish`."""
        files = []
        for path in sorted(study.rglob("*.dcm")):
            snapshot = _sending(path)
            remove_if_present(snapshot)  # left by a round that failed: the file may have been replaced since
            with self._files_lock:
                try:
                    os.link(path, snapshot)
                except OSError:  # no hard links on this file system
                    shutil.copyfile(path, snapshot)
            name = path.relative_to(self.spool).as_posix()
            files.append(PackagedFile(snapshot, file_sha256(snapshot), snapshot.stat().st_size, name))
        return StudyPackage(study.name, tuple(files))

    def keep(self, package: StudyPackage) -> None:
        """Leave the study in the spool for the next round (the commons did not version it): only
        the round's snapshots go."""
        with self._files_lock:
            for item in package.files:
                remove_if_present(item.path)

    def finish(self, package: StudyPackage) -> None:
        """Move the sent copies to ``done/``. Instances that arrived meanwhile stay for the next
        round, and so does a copy that replaced a sent one during the upload (a PACS's correction)."""
        with self._files_lock:
            for item in package.files:
                received = self.spool / item.path_in_package
                # the copy received is the one sent (the same file, or the same bytes), or a later one
                still = received.exists() and (os.path.samefile(received, item.path)
                                               or filecmp.cmp(received, item.path, shallow=False))
                target = self.done / item.path_in_package
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item.path, target)
                if still:
                    received.unlink()
            study = self.spool / package.study_uid
            for folder in sorted(study.rglob("*"), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            if study.is_dir() and not any(study.iterdir()):
                study.rmdir()


def _os_reason(error: BaseException) -> str:
    """What failed on the disk, in one line: the operating system's reason and file (pydicom's writer
    wraps the error in one whose message holds a traceback)."""
    while isinstance(error.__cause__, OSError):
        error = error.__cause__
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _next_try(delay: float) -> str:
    """When the gateway tries again by itself, for the event log and the console."""
    at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=delay)
    return f"in {delay:.0f} s, at {at:%H:%M:%S} UTC, by itself"


class _ReceivedFile:
    """The file pynetdicom writes a received instance to, as it arrives (``_config.STORE_RECV_CHUNKED_DATASET``),
    in the gateway's ``receiving/`` folder: the disk of the spool, not ``/tmp`` (often a RAM disk,
    and a file left there by a crash would never be removed).

    A write the disk refuses (full) is remembered, not raised: raised in pynetdicom's reading
    thread it aborted the association, and the PACS learnt nothing; the C-STORE handler answers
    Out of Resources (A700) instead, as for a spool write that fails."""

    def __init__(self, name: str, handle: Any, assoc: Any, error: OSError | None = None) -> None:
        self.name = name
        self.assoc = assoc
        self.error = error
        self._handle = handle
        self.file = self  #: pynetdicom flushes through ``.file`` (NamedTemporaryFile's file object)

    def _guarded(self, action: Callable[[], Any]) -> None:
        if self.error is None and self._handle is not None:
            try:
                action()
            except OSError as error:
                self.error = error

    def write(self, data: bytes) -> int:
        self._guarded(lambda: self._handle.write(data))
        return len(data)

    def flush(self) -> None:
        self._guarded(lambda: self._handle.flush())

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as error:
                self.error = self.error or error

    def discard(self) -> None:
        """Close and delete the file: the instance as the PACS sent it (identified), which must not
        stay once answered or abandoned. pynetdicom's own unlink after the handler then finds nothing."""
        self.close()
        remove_if_present(self.name)


#: AE (of a listening gateway) -> the folder it receives into; files being received, by name.
_receiving_folders: dict[Any, Path] = {}
_receiving: dict[str, _ReceivedFile] = {}
_receiving_lock = threading.Lock()
#: pynetdicom's settings before the first gateway of the process listened (restored after the last)
_pynetdicom_before: list[tuple[bool, Any]] = []


def _open_received(*args: Any, **kwargs: Any) -> Any:
    """pynetdicom's ``NamedTemporaryFile`` for a received data set: in ``receiving/`` for a gateway's
    association (:class:`_ReceivedFile`), as before for any other listener of the process. Runs in
    the association's reading thread, the DUL, which knows its association."""
    opener = _pynetdicom_before[0][1]
    assoc = getattr(threading.current_thread(), "assoc", None)
    folder = _receiving_folders.get(getattr(assoc, "ae", None))
    if folder is None:
        return opener(*args, **kwargs)
    kwargs.update(dir=folder, prefix=".received-")
    try:
        handle = opener(*args, **kwargs)
        received = _ReceivedFile(handle.name, handle, assoc)
    except OSError as error:  # no room for even a name: answered A700 by the handler
        received = _ReceivedFile(str(folder / f".received-unwritten-{uuid.uuid4().hex}.dcm"), None, assoc, error)
    _receiving[received.name] = received
    return received


def _receive_into(ae: Any, folder: Path) -> None:
    """Have pynetdicom write what ``ae`` receives to a file in ``folder``, chunk by chunk, instead of
    decoding the data set into memory (a 1 GB multi-frame instance took more than 1 GB of memory).
    pynetdicom's setting is for the whole process: it is set while a gateway listens."""
    from pynetdicom import _config, dimse_messages

    with _receiving_lock:
        if not _receiving_folders:
            _pynetdicom_before[:] = [(_config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile)]
            _config.STORE_RECV_CHUNKED_DATASET = True
            dimse_messages.NamedTemporaryFile = _open_received  # type: ignore[assignment]
        _receiving_folders[ae] = folder


def _stop_receiving(ae: Any) -> None:
    """:func:`_receive_into` undone for ``ae``; pynetdicom as it was once no gateway listens."""
    from pynetdicom import _config, dimse_messages

    with _receiving_lock:
        if _receiving_folders.pop(ae, None) is not None and not _receiving_folders and _pynetdicom_before:
            _config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile = _pynetdicom_before[0]
        for name, received in list(_receiving.items()):
            if received.assoc is not None and received.assoc.ae is ae:
                _receiving.pop(name, None)


def _sending(path: Path) -> Path:
    """The name of the snapshot of a spool file that a round sends (a temporary name: one left by a
    crash is removed at the next start)."""
    return path.with_name(f".{path.name}.sending.partial")


class Gateway:
    """The running gateway: a DICOM listener plus a thread that sends complete studies."""

    def __init__(self, config: GatewayConfig, sender: Sender | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.sender = sender
        self.on_event = on_event
        make_state_dir(config.state_dir)
        self.spool = Spool(config.root)
        self._registry_lock = threading.Lock()
        self._fingerprint = key_fingerprint(config.context.key)
        self._stop = threading.Event()
        self._server = None
        self._ae = None
        self._thread: threading.Thread | None = None
        self._announced: dict[str, float] = {}
        self._failed_round: list[str] = []  #: the studies of the round that failed (said once, not per retry)
        #: study UID -> (consecutive changed_since_read refusals, time before which it is not sent again)
        self._changing: dict[str, tuple[int, float]] = {}
        # Refuses a mismatched key at start. A patient the registry holds keeps its recorded date offset
        # (radcommons.deid.dates); none recorded later differs from the derived one, so binding once will do.
        with Registry(config.state_dir, self._fingerprint) as registry:
            self._context = registry.bind(config.context)

    # ------------------------------------------------------------------ DIMSE

    def _event(self, name: str, **fields: Any) -> None:
        try:
            self.spool.log(name, **fields)
        except OSError as error:
            # a full or unwritable disk: said on the console, and neither the answer to the PACS nor
            # the sending thread (which ended there, and no study left the spool any more) is lost
            fields = {**fields, "not_logged": f"the event log could not be written: {_os_reason(error)}"}
        if self.on_event:
            self.on_event(name, fields)

    def _refused(self, event) -> bool:
        """True (and logged) when the calling peer is not on the allow list."""
        if not self.config.allowed:
            return False
        requestor = event.assoc.requestor
        title, address = str(requestor.ae_title).strip(), str(requestor.address)
        if any(peer.admits(title, address) for peer in self.config.allowed):
            return False
        self._event("refused", reason="the calling peer is not on the allow list (--allow)",
                    calling_ae=title, address=address)
        return True

    def handle_accepted(self, event) -> None:
        """Say which SOP classes (or transfer syntaxes) a peer offered that the gateway does not take:
        the PACS's instances of them fail on its side (no acceptable presentation context), and the gateway's
        log said nothing of them."""
        refused = sorted({f"{cx.abstract_syntax} ({cx.abstract_syntax.name})"
                          + ("" if cx.result == _ABSTRACT_SYNTAX_NOT_SUPPORTED else ": none of its transfer syntaxes")
                          for cx in event.assoc.rejected_contexts if cx.abstract_syntax})
        if refused:
            requestor = event.assoc.requestor
            self._event("not_accepted", calling_ae=str(requestor.ae_title).strip(), address=str(requestor.address),
                        offered=refused, reason="the gateway does not store these: the peer cannot send "
                        "instances of them here (its side finds no acceptable presentation context)")

    def handle_closed(self, event) -> None:
        """Delete what an association that ended in the middle of a transfer (an abort, a dropped
        connection) had sent of an instance: pynetdicom leaves the file; it is the instance as the PACS
        sent it, identified, and never acknowledged (the PACS sends it again)."""
        for name, received in list(_receiving.items()):
            if received.assoc is event.assoc:
                _receiving.pop(name, None)
                received.discard()

    def handle_echo(self, event) -> int:
        return NOT_AUTHORIZED if self._refused(event) else SUCCESS

    def handle_store(self, event) -> int:
        """De-identify the instance and write it to the spool; only then answer success.

        The instance is read from the file pynetdicom received it into (:func:`_receive_into`),
        by the de-identifier's file path (:func:`radcommons.deid.deidentify_file`: the header
        parsed, the pixel bytes copied, never decoded), so that memory stays flat whatever
        the size of the instance; its output is the same as the de-identification of the
        data set in memory gave. Whatever the answer (stored, refused, failed), the received
        file goes before it is sent: a refused peer's instance stays in ``receiving/`` no longer
        than one that was stored."""
        sop = str(event.request.AffectedSOPInstanceUID or "")
        path = event.dataset_path  # None: the request carried no data set (see _store)
        # received whole: an abort no longer concerns it
        received = _receiving.pop(str(path), None) if path is not None else None
        try:
            if self._refused(event):
                return NOT_AUTHORIZED
            if received is not None:
                received.flush()
                if received.error is not None:
                    return self._spool_failed(received.error, sop)
            return self._store(path, sop, str(event.assoc.requestor.ae_title))
        finally:
            if received is not None:
                received.discard()

    def _store(self, path: Path | None, sop: str, calling_ae: str) -> int:
        """De-identify the received file ``path`` into the spool (:meth:`handle_store`); the status."""
        if path is None:
            # A C-STORE-RQ whose Command Data Set Type (0000,0800) says "no data set" (0101H, PS3.7
            # E.1): pynetdicom opens no file for it and hands the handler no path, only the command.
            self._event("rejected", reason="the C-STORE request carried no data set (Command Data Set Type 0101H)",
                        calling_ae=calling_ae, sop_instance_uid=sop)
            return CANNOT_UNDERSTAND
        pending = PendingWrites()
        try:
            try:
                outcome = deidentify_file(Path(path), self.spool.spool, self._context, pending=pending,
                                          keep_existing=False)
            except OutputWriteError as error:  # the spool's disk, not the instance: the PACS may send it again
                return self._spool_failed(error.error, sop)
            if outcome.status != DEIDENTIFIED or outcome.output is None:
                # named as the PACS knows it (the original UIDs; the accession number only in the private
                # event log), so that the data manager can find what was refused
                self._event(outcome.status, reason=outcome.reason, calling_ae=calling_ae, **_received(Path(path)))
                return PROCESSING_FAILURE
            # the de-identifier names the spool file: <study>/<series>/<sop>.dcm of the new UIDs
            # (output_relpath), written as a temporary file beside it
            [(written, final)] = pending.paths()
            target = Path(final)
            replaced = self.spool.put(target, Path(written))
            with self._registry_lock, Registry(self.config.state_dir, self._fingerprint) as registry:
                registry.record([outcome.patient] if outcome.patient else [], [outcome.study] if outcome.study else [])
        except (OSError, sqlite3.Error) as error:
            return self._spool_failed(error, sop)
        finally:
            pending.discard()
        # a resend is said (the console shows it): the PACS's later copy is the one that leaves
        self._event("replaced" if replaced else "stored", study=target.parent.parent.name, sop=target.stem,
                    **replaced)
        return SUCCESS

    def _spool_failed(self, error: BaseException, sop_instance_uid: str) -> int:
        """Say that an instance could not be received or spooled (a full disk), and answer A700."""
        # the reason alone (pydicom's writer puts a traceback in its message); the PACS sends again
        self._event("spool_failed", reason=_os_reason(error),
                    sop_instance_uid=sop_instance_uid,
                    answered="out of resources (A700): the PACS may send it again",
                    check=f"free space on the disk of {self.spool.root} and that the gateway may write there")
        return OUT_OF_RESOURCES

    def start(self) -> None:
        """Listen (non-blocking) and start the sending thread."""
        from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        # An association addressed to another AE title is rejected (PS3.8 Table 9-21, reason 7:
        # called AE title not recognized): a misconfigured PACS must not deliver here by mistake.
        ae.require_called_aet = True
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.maximum_pdu_size = MAX_PDU
        ae.acse_timeout = self.config.associate_seconds
        handlers = [(evt.EVT_C_ECHO, self.handle_echo), (evt.EVT_C_STORE, self.handle_store),
                    (evt.EVT_ACCEPTED, self.handle_accepted), (evt.EVT_CONN_CLOSE, self.handle_closed)]
        _receive_into(ae, self.spool.receiving)  # received to a file, never whole in memory
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False,
                                           evt_handlers=handlers)
        except OSError as error:
            _stop_receiving(ae)
            raise listen_error(self.config.host, self.config.port, error) from None
        self._ae = ae
        self._thread = threading.Thread(target=self._loop, name="gateway-sender", daemon=True)
        self._thread.start()
        self._event("listening", ae_title=self.config.ae_title, port=self.config.port)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening and sending. An association still open after ``grace`` seconds (a PACS
        that keeps one open between studies, a long transfer) is aborted: the process waited for
        it until pynetdicom's network timeout (60 s) after saying it had stopped. What it had not
        been answered for is the PACS's to send again; nothing half-written stays in the spool.

        A connection that is not (or no longer) an established association, such as a port probe or
        a health check that connected and closed, is ended at once and not said: pynetdicom waits
        for its A-ASSOCIATE-RQ for the ACSE timeout (:data:`ASSOCIATE_WAIT`), and each one held a stop
        for the whole grace period and logged an ``aborted`` of no calling AE."""
        self._stop.set()
        if self._server is not None:
            open_ = list(self._server.active_associations)
            self._server.shutdown()
            for assoc in open_:
                if not assoc.is_established:
                    assoc.abort()
            deadline = time.monotonic() + grace
            for assoc in (a for a in open_ if a.is_established):
                assoc.join(max(0.0, deadline - time.monotonic()))
                if assoc.is_alive():
                    assoc.abort()
                    self._event("aborted", calling_ae=str(assoc.requestor.ae_title).strip(),
                                address=str(assoc.requestor.address),
                                reason=f"the gateway is stopping and the association was still open after {grace:.0f} s; "
                                       "the PACS sends again what was not acknowledged")
            _stop_receiving(self._ae)
            self.spool.clear_receiving()  # what aborted associations had begun to send
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.wait(self.retry_delay(failures)):
            try:
                self.flush()
                failures = 0
            except Exception as error:  # the commons being away must not stop the listener
                failures += 1
                try:
                    self._send_failed(error, self.retry_delay(failures))
                except Exception as unsaid:  # noqa: BLE001 - nor one that cannot be said end the sending
                    if self.on_event:
                        self.on_event("send_failed", {"reason": f"{type(error).__name__}: {error}",
                                                      "unsaid": f"{type(unsaid).__name__}: {unsaid}"})

    def retry_delay(self, failures: int) -> float:
        """Seconds to the next send round: the check interval, doubled with each failure (5 min at most)."""
        return self.config.check_seconds if not failures else min(MAX_WAIT, self.config.check_seconds * 2**failures)

    def changed_delay(self, refusals: int) -> float:
        """Seconds a study waits after its ``refusals``-th consecutive ``changed_since_read``: none after
        the first (the next round reads the new version: a sender that raced this one once), then twice
        the check interval, doubled with each refusal (5 min at most), as a failed round waits."""
        return 0.0 if refusals <= 1 else self.retry_delay(refusals - 1)

    def _send_failed(self, error: Exception, delay: float) -> None:
        """Say what failed, how much waits and when the gateway tries again by itself (the error's own
        hint is for a command a person reruns: none is needed here)."""
        reason = error.message if isinstance(error, UserError) else str(error)
        self._event("send_failed", reason=f"{type(error).__name__}: {reason}",
                    waiting=f"{len(self.spool.studies())} stud(ies) in the spool", next_try=_next_try(delay))

    def flush(self, now: float | None = None) -> Delivery | None:
        """Send the complete studies (if a sender is set) and move them to ``done/``."""
        clock = time.time() if now is None else now
        started = time.monotonic()
        # a study the commons keeps refusing waits its turn; the others go as they complete
        complete = [study for study in self.spool.complete(self.config.quiet_seconds, clock)
                    if self._changing.get(study.name, (0, clock))[1] <= clock]
        if not complete:
            return None
        if self.sender is None:
            # Spool-only mode: announce each study once per change, keep it where it is.
            fresh = {s.name: self.spool.last_arrival(s) for s in complete}
            new = sorted(uid for uid, when in fresh.items() if self._announced.get(uid) != when)
            self._announced.update(fresh)
            if new:
                self._event("complete", studies=new, sent=False)
            return None
        packages = [self.spool.package(study) for study in complete]
        studies = [p.study_uid for p in packages]
        if studies != self._failed_round:  # a retry of the same round is not news
            self._event("complete", studies=studies, files=sum(len(p.files) for p in packages))
        self._failed_round = studies
        delivery = self.sender(packages)
        self._failed_round = []
        # the receipt is kept before the spool lets the studies go, so a crash in between
        # leaves the studies to send again (the commons stores them once), never a lost receipt
        receipts = self.config.state_dir / "receipts"
        receipts.mkdir(mode=0o700, exist_ok=True)  # private, as contribute's: file and row numbers of the site
        write_atomic(
            receipts / f"gateway-{delivery.submission.dataset}-{delivery.submission.id}.json",
            json.dumps({"upload": delivery.stats.to_json(), "receipt": delivery.receipt.data}, indent=1) + "\n",
            private=True,
        )
        # a study the commons left as it was, because it changed there after this round read it, is
        # sent again by the next round, which reads the new version
        outcome = {line.get("study_uid"): line for line in delivery.receipt.studies}
        again = {uid for uid, line in outcome.items() if line.get("status") == CHANGED_SINCE_READ}
        for package in packages:
            if package.study_uid in again:
                self.spool.keep(package)
            else:
                self.spool.finish(package)
                self._changing.pop(package.study_uid, None)
        self._event("sent", submission=delivery.submission.id, dataset=delivery.submission.dataset,
                    studies=[p.study_uid for p in packages if p.study_uid not in again],
                    counts=delivery.receipt.counts)
        elapsed = time.monotonic() - started  # the wait counts from the end of the round
        for uid in sorted(again):
            refusals = self._changing.get(uid, (0, 0.0))[0] + 1
            delay = self.changed_delay(refusals)
            self._changing[uid] = (refusals, clock + elapsed + delay if delay else clock)
            next_try = "the next round, with the new version" if not delay else _next_try(delay)
            self._event(CHANGED_SINCE_READ, study=uid, reason=outcome[uid].get("reason"),
                        submission=delivery.submission.id, refusals=refusals, next_try=next_try)
            if refusals >= REFUSALS_TO_WARN:
                self._event(
                    "study_keeps_changing", study=uid, refusals=refusals, next_try=next_try,
                    reason=f"the commons refused this study {refusals} times in a row because it changed there "
                           "after each round read it, so it stays in the spool",
                    check="another sender of the site making new versions of the same study: a second gateway "
                          "with its own --state-dir, or radcommons contribute run again and again on an export "
                          "holding it; stop the other sender or let it finish (the study's versions and the "
                          "submissions that made them are listed by GET /studies/UID/versions). The gateway "
                          f"keeps trying, every {MAX_WAIT / 60:.0f} minutes at most")
        return delivery


#: What names a refused instance in the event log, as the PACS knows it (keyword -> field).
_RECEIVED = (("SOPInstanceUID", "sop_instance_uid"), ("StudyInstanceUID", "study_instance_uid"),
             ("AccessionNumber", "accession_number"))


def _received(path: Path) -> dict[str, str]:
    """The original identifiers of an arriving instance that say which one it is (empty ones left out)."""
    found: dict[str, str] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=[keyword for keyword, _ in _RECEIVED])
    except Exception:  # noqa: BLE001 - a header that does not read names nothing
        return found
    for keyword, field in _RECEIVED:
        try:
            value = str(ds.get(keyword, "") or "").strip()
        except Exception:  # noqa: BLE001 - a value that does not decode names nothing
            continue
        if value:
            found[field] = value
    return found


def spooled_files(root: Path) -> list[Path]:
    """Every de-identified file in a gateway's spool (tests and status displays)."""
    return sorted((Path(root) / "spool").rglob("*.dcm"))


#: First wait, in seconds, between the attempts of one request of a send round (the client's own
#: default is 0.5 s). The six attempts then span 1.5 to 3 s: enough for a dropped connection or a
#: brief 503. A longer outage is for the gateway's loop to wait out, and its wait is the one each
#: ``send_failed`` announces; with the default, every round spent 8 to 15 s in backoff before it
#: could say that the commons was away.
SEND_BACKOFF = 0.1


@dataclass(frozen=True)
class WholeStudy(StudyPackage):
    """A study as the commons is to hold it after a round: the files the gateway received (sent
    unless the commons holds their bytes) and, declared but not sent, the instances the commons
    holds of the study already that none of them replaces."""

    held: tuple[ManifestEntry, ...] = ()

    def manifest(self) -> list[ManifestEntry]:
        # the received ones first: the study's header values are taken from its first instance
        return [*super().manifest(), *self.held]


def whole_study(client: CommonsClient, project: str, package: StudyPackage) -> StudyPackage:
    """``package`` with the instances of its study's latest version at the commons that it does not
    replace (by SOP Instance UID, the name of a spooled file).

    The commons takes a study's manifest as the whole study: a round that declared only what the
    gateway received made a version without the rest, whether an earlier round or ``radcommons
    contribute`` had sent it (the gateway had no copy of the latter). The commons holds their
    bytes, as the site's own data, so they are declared and not sent again. A study the commons
    has no version of (new to it, or none of it indexed) is sent as received.

    The version read is the study's ``base_version`` (0: none): the commons versions the study only
    if it is still the latest at the commit, so that one made meanwhile (``radcommons contribute``
    sending the study, another round) is not replaced by a version that lacks what it added."""
    try:
        versions = client.study_versions(package.study_uid, project)
    except NotFoundError:
        versions = []
    if not versions:
        return replace(package, base_version=0)
    latest = versions[-1]
    received = {PurePosixPath(item.path_in_package).stem for item in package.files}
    held = tuple(ManifestEntry(i["object_id"], int(i["size"]),
                               output_relpath(package.study_uid, i["series_uid"], i["sop_instance_uid"]))
                 for i in latest["instances"] or [] if i["sop_instance_uid"] not in received)
    return WholeStudy(package.study_uid, package.files, int(latest["version"]), held)


def commons_sender(client: CommonsClient, state_dir: Path, *, server: str, project: str, site: str,
                   workers: int = 4) -> Sender:
    """A :data:`Sender` that delivers to the commons, one submission per round of complete studies,
    each declared whole (:func:`whole_study`)."""

    def send(packages: Sequence[StudyPackage]) -> Delivery:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        whole = [whole_study(client, project, package) for package in packages]
        with UploadJournal(state_dir) as journal:
            # A round interrupted by a restart is continued under its journaled dataset name.
            return deliver(client, journal, target=target_key(server, project, site, "gateway"), project=project,
                           site=site, dataset=f"{site}_GW_{stamp}", packages=whole, workers=workers)

    return send
