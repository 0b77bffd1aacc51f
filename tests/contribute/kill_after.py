"""Run ``radcommons contribute`` and SIGKILL the process after N files were uploaded (a real crash).

Used by the end-to-end test: ``python kill_after.py N contribute ARGS...``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from radcommons.client import CommonsClient

limit = int(sys.argv[1])
done = 0
lock = threading.Lock()
original = CommonsClient.upload_file


def upload_file(self, *args, **kwargs):
    global done
    result = original(self, *args, **kwargs)
    with lock:
        done += 1
        if done >= limit:
            os.kill(os.getpid(), signal.SIGKILL)
    return result


CommonsClient.upload_file = upload_file  # type: ignore[method-assign]
sys.argv = ["radcommons", *sys.argv[2:]]
from radcommons.cli import main  # noqa: E402

main()
