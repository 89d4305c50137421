"""The heap is trimmed once the last upload in flight ends, and only then."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from ocireg.api.observe import RequestRecord
from ocireg.heap import TRIM_AFTER, HeapTrimmer, find_malloc_trim


def _record(upload: bool, received: int = TRIM_AFTER) -> RequestRecord:
    return RequestRecord(
        method="PUT", path="/v2/a/blobs/uploads/x", route=None, status=201, received=received,
        sent=0, duration=0.1, client="127.0.0.1", user=None, repository="a", reference=None,
        completed=True, upload=upload,
    )


class _Threads:
    """Runs each job when the test says its thread is done."""

    def __init__(self) -> None:
        self.jobs: list[tuple[object, Deferred]] = []

    def run(self, job) -> Deferred:
        done: Deferred = Deferred()
        self.jobs.append((job, done))
        return done

    def finish(self) -> None:
        job, done = self.jobs.pop(0)
        done.callback(job())


def test_this_c_library_has_a_malloc_trim_that_runs():
    trim = find_malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)


def test_one_trim_runs_when_the_last_of_overlapping_uploads_ends():
    calls = []
    trimmer = HeapTrimmer(lambda: calls.append(1), lambda job: succeed(job()))
    for _ in range(3):
        trimmer.upload_started()
    trimmer.request_done(_record(upload=True))
    trimmer.request_done(_record(upload=True))
    trimmer.request_done(_record(upload=False))
    assert calls == []
    trimmer.request_done(_record(upload=True))
    assert calls == [1]


def test_requests_without_an_upload_never_trim():
    calls = []
    trimmer = HeapTrimmer(lambda: calls.append(1), lambda job: succeed(job()))
    for _ in range(5):
        trimmer.request_done(_record(upload=False))
    assert calls == []


def test_a_burst_that_ends_while_a_trim_runs_is_trimmed_after_it_once():
    calls = []
    threads = _Threads()
    trimmer = HeapTrimmer(lambda: calls.append(1), threads.run)
    trimmer.upload_started()
    trimmer.request_done(_record(upload=True))
    for _ in range(2):
        trimmer.upload_started()
        trimmer.request_done(_record(upload=True))
    assert len(threads.jobs) == 1
    threads.finish()
    assert len(threads.jobs) == 1
    threads.finish()
    assert calls == [1, 1]
    assert trimmer.trims == 2


def test_without_a_malloc_trim_nothing_runs():
    threads = _Threads()
    trimmer = HeapTrimmer(None, threads.run)
    trimmer.upload_started()
    trimmer.request_done(_record(upload=True))
    assert threads.jobs == []


def test_uploads_that_brought_little_are_not_worth_a_trim_until_they_add_up():
    calls = []
    trimmer = HeapTrimmer(lambda: calls.append(1), lambda job: succeed(job()))
    for _ in range(3):
        trimmer.upload_started()
        trimmer.request_done(_record(upload=True, received=TRIM_AFTER // 4))
    assert calls == []
    trimmer.upload_started()
    trimmer.request_done(_record(upload=True, received=TRIM_AFTER // 4))
    assert calls == [1]
    trimmer.upload_started()
    trimmer.request_done(_record(upload=True, received=TRIM_AFTER // 4))
    assert calls == [1]
