"""A large multi-frame file de-identifies with flat memory (header parsed, pixels copied)."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydicom.filewriter import dcmwrite

from radcommons.deid.fileio import read_header

from deid_support import make_ct

FRAMES = 500  # 512 x 512 x 2 bytes x 500 = 250 MiB of Pixel Data
LIMIT_MB = 300


def _big_file(path: Path) -> Path:
    ds = make_ct(rows=512)
    del ds.PixelData
    ds.NumberOfFrames = FRAMES
    length = 512 * 512 * 2 * FRAMES
    with open(path, "wb") as out:
        dcmwrite(out, ds, enforce_file_format=True)
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, length))
        frame = bytes(range(256)) * (512 * 512 * 2 // 256)
        for index in range(FRAMES):
            out.write(frame[index % 256:] + frame[: index % 256])
    return path


def _pixel_digest(path: Path) -> str:
    start, end = read_header(path).pixel_span
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining:
            chunk = handle.read(min(1 << 20, remaining))
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_250mb_multiframe_peak_rss_under_300mb(tmp_path):
    source = _big_file(tmp_path / "big.dcm")
    assert source.stat().st_size > 250 * 1024 * 1024
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from radcommons.deid import DeidContext, deidentify_file, load_profile
        context = DeidContext(bytes(range(32)), "SITE_A", load_profile("default"))
        outcome = deidentify_file(Path({str(source)!r}), Path({str(tmp_path / 'out')!r}), context)
        assert outcome.status == "deidentified", outcome.reason
        print(outcome.output)
        # VmHWM: the peak of this process's own memory. ru_maxrss would carry over the peak of
        # the (large, long-lived) test worker that spawned it: Linux keeps it across exec.
        print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    output_rel, peak_kb = run.stdout.split()
    peak_mb = int(peak_kb) / 1024
    print(f"peak RSS {peak_mb:.0f} MB for a {source.stat().st_size / 2**20:.0f} MiB file")
    assert peak_mb < LIMIT_MB
    assert _pixel_digest(tmp_path / "out" / output_rel) == _pixel_digest(source)
