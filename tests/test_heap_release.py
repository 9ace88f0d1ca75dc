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
