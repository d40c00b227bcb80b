"""Closing: later calls raise ama.ArchiveClosed; results in hand stay usable."""

from __future__ import annotations

from pathlib import Path

import pytest

import ama

from conftest import PASSPHRASE, mail


def test_use_after_close_is_a_clear_error(tmp_path: Path) -> None:
    with ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True) as a:
        acme = a.create_tenant("acme")
        receipts = acme.ingest_many(mail(f"m{i}") for i in range(30))
        first = receipts[0]
        assert isinstance(first, ama.Receipt)
        message = acme.get(first.id)
        results = acme.search("", page_size=10)
        partly = [next(results) for _ in range(10)]
        view = a.tenant("acme", as_end_user="bob@acme.test")
    assert a.closed and "closed" in repr(a)

    # Everything that needs the engine says so, in words.
    for call in (
        lambda: next(results),  # the next page of a lazy search
        lambda: acme.get(first.id),
        lambda: acme.search(""),
        lambda: acme.ingest(mail("late")),
        lambda: acme.stats(),
        lambda: view.count(),
        lambda: a.tenant("acme"),
        lambda: a.tenants(),
        lambda: a.create_tenant("new"),
    ):
        with pytest.raises(ama.ArchiveClosed, match="archive is closed"):
            call()
    with pytest.raises(ama.Error):
        next(results)

    # Values already returned are plain data.
    assert message.raw.startswith(b"From: alice@acme.test")
    assert message.as_email()["Subject"] == "m0"
    assert message.text.strip() == "Hello."
    assert len(partly) == 10 and partly[0].subject is not None

    a.close()  # twice is fine


def test_reopen_after_close(tmp_path: Path) -> None:
    a = ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True)
    r = a.create_tenant("acme").ingest(mail("kept"))
    a.close()
    # The data directory is released: it opens again at once.
    with ama.Archive.open(tmp_path / "d", passphrase=PASSPHRASE) as b:
        assert b.tenant("acme").get(r.id).subject == "kept"


def test_exit_closes_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True) as a:
            raise RuntimeError("boom")
    assert a.closed
