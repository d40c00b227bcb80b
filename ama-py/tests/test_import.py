"""import_path: .eml files, directories, mbox and Maildir through the engine's pipeline."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import List

import pytest

import ama

from conftest import CORPUS, EXAMPLE_MAIL, MEASURED, PASSPHRASE


def test_import_examples_with_progress(acme: ama.Tenant) -> None:
    seen: List[ama.ImportProgress] = []
    summary = acme.import_path(EXAMPLE_MAIL, progress=seen.append, progress_every=2)
    assert summary.imported == 6  # four .eml files and an mbox of two
    assert summary.refused == 0 and summary.refusals == ()
    assert summary.bytes > 0
    assert seen and seen[-1].messages == 6 and seen[-1].imported == 6
    assert [p.messages for p in seen] == sorted(p.messages for p in seen)
    again = acme.import_path(str(EXAMPLE_MAIL / "05-board.mbox"))
    assert (again.imported, again.duplicates) == (0, 2)
    assert acme.count() == 6
    hit = next(iter(acme.search("", limit=1)))
    assert acme.get(hit.id).deliveries[0].source == "python"


def test_import_maildir_and_refusals(acme: ama.Tenant, tmp_path: Path) -> None:
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    shutil.copy(EXAMPLE_MAIL / "01-welcome.eml", md / "cur" / "1.host:2,S")
    (md / "new" / "2.host").write_bytes(bytes(range(256)) * 8)  # not mail
    summary = acme.import_path([md])
    assert summary.imported == 1 and summary.refused == 1
    (refusal,) = summary.refusals
    assert "2.host" in refusal.origin and "not an e-mail" in refusal.reason


def test_progress_exception_stops_the_import(acme: ama.Tenant) -> None:
    calls = []

    def progress(p: ama.ImportProgress) -> None:
        calls.append(p)
        raise KeyError("stop")

    with pytest.raises(KeyError):
        acme.import_path(EXAMPLE_MAIL, progress=progress, progress_every=1, batch_size=2)
    assert len(calls) == 1  # not called again after it raised
    assert acme.count() == 2  # the first batch was committed, nothing after it
    acme.import_path(EXAMPLE_MAIL)
    assert acme.count() == 6  # and a second run brings in the rest


def test_import_unknown_tenant_or_closed(archive: ama.Archive) -> None:
    t = archive.create_tenant("t")
    archive.close()
    with pytest.raises(ama.ArchiveClosed):
        t.import_path(EXAMPLE_MAIL)


ENRON = CORPUS / "enron-inbox"


@pytest.mark.skipif(
    not ENRON.is_dir() or os.environ.get("AMA_PY_IMPORT_BENCH") != "1",
    reason="set AMA_PY_IMPORT_BENCH=1 (and have ../shared/corpus) to measure the enron import",
)
def test_enron_import_throughput(tmp_path: Path) -> None:
    """Import throughput from Python (compare with `ama import`, same corpus)."""
    with ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True) as a:
        t = a.create_tenant("enron")
        start = time.perf_counter()
        s = t.import_path(ENRON)
        secs = time.perf_counter() - start
    n = s.imported + s.duplicates
    MEASURED["enron-inbox import via tenant.import_path"] = (
        f"{n / secs:.0f} msg/s ({n} messages, {s.refused} refused, {secs:.1f} s)"
    )
    assert s.imported > 40_000
