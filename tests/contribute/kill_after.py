"""Run ``radcommons contribute`` and SIGKILL the process once N files were uploaded (a real crash).

Used by the end-to-end test: ``python kill_after.py N contribute ARGS...``. Batches are cut to two
files, so the kill comes in the middle of a study. Before the kill it prints ``killed after F files,
the last request carried L`` to stderr: the server stored F files, the journal knows F - L of them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from radcommons.client import CommonsClient
from radcommons.pipelines import contribute_upload

limit = int(sys.argv[1])
done = 0
lock = threading.Lock()
upload_file, upload_batch, upload_jobs = CommonsClient.upload_file, CommonsClient.upload_batch, contribute_upload.upload_jobs


def count(files: int) -> None:
    global done
    with lock:
        done += files
        if done >= limit:
            print(f"killed after {done} files, the last request carried {files}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def counted_upload_file(self, *args, **kwargs):
    result = upload_file(self, *args, **kwargs)
    count(1)
    return result


def counted_upload_batch(self, *args, **kwargs):
    results = upload_batch(self, *args, **kwargs)
    count(len(results))
    return results


def pairs(*args, **kwargs):
    return [job[start:start + 2] for job in upload_jobs(*args, **kwargs) for start in range(0, len(job), 2)]


CommonsClient.upload_file = counted_upload_file  # type: ignore[method-assign]
CommonsClient.upload_batch = counted_upload_batch  # type: ignore[method-assign]
contribute_upload.upload_jobs = pairs  # type: ignore[assignment]
sys.argv = ["radcommons", *sys.argv[2:]]
from radcommons.cli import main  # noqa: E402

main()
