"""A large multi-frame file de-identifies with flat memory (header parsed, pixels copied)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deid_support import make_ct, pixel_digest, write_multiframe

FRAMES = 500  # 512 x 512 x 2 bytes x 500 = 250 MiB of Pixel Data
LIMIT_MB = 300


def _big_file(path: Path) -> Path:
    ds = make_ct(rows=512)
    del ds.PixelData
    return write_multiframe(path, ds, FRAMES)


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
    assert pixel_digest(tmp_path / "out" / output_rel) == pixel_digest(source)
