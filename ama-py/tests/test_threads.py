"""Heavy calls release the GIL: searches from several threads run in parallel."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List

import ama

from conftest import MEASURED, mail

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
QUERIES = [
    "",
    "alpha OR bravo",
    "charlie -delta",
    "from:acme.test echo",
    '"golf hotel"',
    "subject:report",
    "after:2021-01-01 foxtrot",
    "to:bob@acme.test (alpha OR hotel)",
]


def _fill(t: ama.Tenant, n: int) -> None:
    def gen():
        for i in range(n):
            words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 12))
            yield mail(
                f"report {i} {WORDS[i % 8]}",
                sender=f"user{i % 50}@acme.test",
                body=(words + "\r\n") * 20,
                date=f"Mon, {1 + i % 28:02d} Mar {2019 + i % 5} 10:00:00 +0000",
            )
    t.ingest_many(gen())


def _work(t: ama.Tenant, rounds: int) -> List[int]:
    out = []
    for _ in range(rounds):
        for q in QUERIES:
            out.append(sum(1 for _ in t.search(q, limit=200, page_size=200)))
    return out


def test_parallel_search_is_faster_than_serial(acme: ama.Tenant) -> None:
    _fill(acme, 3000)
    rounds = 6
    expected = _work(acme, 1)  # also warms the caches

    start = time.perf_counter()
    serial = [_work(acme, rounds) for _ in range(4)]
    t_serial = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda _: _work(acme, rounds), range(4)))
    t_parallel = time.perf_counter() - start
    # CPU seconds per wall second while the 4 threads ran: above 1 means they
    # really ran at the same time (the GIL was released), whatever the load.
    busy = (time.process_time() - cpu) / t_parallel

    assert serial == parallel == [expected * rounds] * 4
    ratio = t_serial / t_parallel
    MEASURED["search, 4 threads vs serial"] = (
        f"{ratio:.2f}x faster ({t_serial:.2f} s serial, {t_parallel:.2f} s parallel, "
        f"{4 * rounds * len(QUERIES)} searches of up to 200 hits; {busy:.2f} CPUs busy "
        f"while parallel; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
    )
    # No time is asserted (shared CI machines); the ratio is reported.


def test_concurrent_ingest_and_search(acme: ama.Tenant) -> None:
    errors: List[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(40):
                acme.ingest(mail(f"w{k} {i}", body=f"writer{k}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(40):
                list(acme.search("writer0 OR writer1", limit=50))
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert acme.count("writer0") == 40 and acme.count("writer1") == 40


def test_gil_is_released_during_engine_calls() -> None:
    """Load-independent check: while one thread is inside a long engine call,
    another keeps running Python code. If the call held the GIL, the other
    thread would stall for the whole call."""
    raw = (
        b"From: a@acme.test\r\nSubject: big\r\nContent-Type: text/html\r\n\r\n"
        + b"<p>quarterly numbers &amp; more</p>\n" * 1_000_000
    )
    started = threading.Event()
    span: List[float] = []

    def call() -> None:
        started.set()
        t0 = time.perf_counter()
        ama._ama.message_text(raw, 0)  # the engine's text extraction, GIL released
        span.append(time.perf_counter() - t0)

    worker = threading.Thread(target=call)
    worker.start()
    started.wait()
    last = time.perf_counter()
    max_gap = 0.0
    while worker.is_alive():
        now = time.perf_counter()
        max_gap = max(max_gap, now - last)
        last = now
    worker.join()
    (duration,) = span
    MEASURED["GIL during a {:.2f} s engine call".format(duration)] = (
        f"other thread's longest stall {max_gap * 1000:.1f} ms"
    )
    assert duration > 0.05, "call too short to tell"
    assert max_gap < duration / 2
