"""The bulk job hands the C heap's free pages back while it works (pipelines/sanitize/faces.py)."""

from pipelines.sanitize import faces as faces_module
from pipelines.sanitize.faces import HeapReleaser


def test_the_heap_is_trimmed_at_most_once_per_interval_and_not_when_switched_off(monkeypatch):
    calls = []
    clock = [100.0]
    monkeypatch.setattr(HeapReleaser, "_trim", staticmethod(lambda pad: calls.append(pad) or 1))
    monkeypatch.setattr(HeapReleaser, "_last", 0.0)
    monkeypatch.setattr(faces_module.time, "monotonic", lambda: clock[0])
    monkeypatch.delenv("FACESAN_NO_HEAP_RELEASE", raising=False)
    releaser = HeapReleaser(every_s=2.0)
    releaser.maybe_release()
    releaser.maybe_release()  # the same instant: not again
    assert calls == [0]  # malloc_trim(0): every free page, no padding kept
    clock[0] += 1.0
    HeapReleaser(every_s=2.0).maybe_release()  # another DoFn instance shares the interval
    assert calls == [0]
    clock[0] += 1.5
    releaser.maybe_release()
    assert calls == [0, 0]
    clock[0] += 10.0
    monkeypatch.setenv("FACESAN_NO_HEAP_RELEASE", "1")
    releaser.maybe_release()
    assert calls == [0, 0]


def test_without_malloc_trim_in_the_c_library_nothing_is_called(monkeypatch):
    monkeypatch.setattr(HeapReleaser, "_trim", None)
    monkeypatch.setattr(HeapReleaser, "_last", 0.0)
    HeapReleaser(every_s=0.0).maybe_release()  # no error: a no-op


def test_glibc_malloc_trim_is_found_here():
    """The build machines run glibc: the releaser is active there."""
    assert faces_module._glibc_malloc_trim() is not None


# Run in a fresh interpreter: the threshold is process-wide and, once fixed, stays fixed.
_HOLES = r"""
import ctypes, sys
from pipelines.sanitize.faces import HeapReleaser
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def resident_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20
HeapReleaser.fix_mmap_threshold_once(float(sys.argv[1]))
first = libc.malloc(4 << 20); libc.free(first)  # glibc's adaptive threshold rises past 2 MiB here
blocks = []
for _ in range(100):
    block = libc.malloc(2 << 20)
    ctypes.memset(block, 1, 2 << 20)
    blocks.append(block)
before = resident_mib()
for block in blocks[::2]:  # 100 MiB freed as holes between live blocks
    libc.free(block)
print(f"fell {before - resident_mib():.1f} fixed {HeapReleaser._threshold_fixed}")
"""


def _holes_returned(threshold_mib: float) -> tuple[float, bool]:
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _HOLES, str(threshold_mib)], capture_output=True, text=True,
                            cwd=root, env={**os.environ, "PYTHONPATH": root}, check=True)
    fell, fixed = result.stdout.split()[1::2]
    return float(fell), fixed == "True"


def test_a_fixed_mmap_threshold_returns_freed_blocks_between_live_ones():
    """--heap-mmap-threshold-mib: with glibc's adaptive threshold, 2 MiB blocks freed between live
    ones stay resident (holes in the arena); with it fixed at 1 MiB each had its own mapping and
    goes back when freed. 0 leaves glibc's behaviour as it was."""
    fell, fixed = _holes_returned(1.0)
    assert fixed and fell > 90  # of the 100 MiB freed
    fell, fixed = _holes_returned(0.0)
    assert not fixed and fell < 10
