"""Ingest → search → get: the bytes come back exactly, metadata is typed."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

import ama

from conftest import CORPUS, example_files, mail


def test_round_trip_byte_identical(acme: ama.Tenant) -> None:
    files = example_files()
    assert files, "examples/mail/*.eml missing"
    for path in files:
        raw = path.read_bytes()
        receipt = acme.ingest(raw)
        assert not receipt.duplicate
        assert len(receipt.sha256) == 64
        message = acme.get(receipt.id)
        assert message.raw == raw, path
        assert message.id == receipt.id
        assert message.sha256 == receipt.sha256
        found = [h.id for h in acme.search(f"message-id:{message.message_id}")]
        assert found == [receipt.id], path


def test_as_email_parses(acme: ama.Tenant) -> None:
    raw = (Path(__file__).resolve().parents[2] / "examples/mail/02-invoice.eml").read_bytes()
    message = acme.get(acme.ingest(raw).id)
    parsed = message.as_email()
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == message.subject
    assert [a.name for a in message.attachments] == [
        p.get_filename() for p in parsed.iter_attachments()
    ]


def test_metadata_types(acme: ama.Tenant) -> None:
    at = datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    raw = mail("Quarterly report", sender="Alice Example <alice@acme.test>", body="numbers inside")
    r = acme.ingest(raw, mail_from="alice@acme.test", rcpt_to=["bob@acme.test", "eve@acme.test"], received_at=at)
    hit = next(iter(acme.search('"quarterly report"')))
    assert isinstance(hit, ama.Hit) and not isinstance(hit, ama.Message)
    assert hit.id == r.id
    assert hit.date == datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
    assert hit.date.tzinfo is not None and hit.header_date == hit.date
    assert hit.from_ == (ama.Mailbox("Alice Example", "alice@acme.test"),)
    assert str(hit.from_[0]) == "Alice Example <alice@acme.test>"
    assert hit.to[0].address == "bob@acme.test"
    (d,) = hit.deliveries
    assert d == ama.Delivery("alice@acme.test", ("bob@acme.test", "eve@acme.test"), at.replace(microsecond=0), "python")
    assert d.received_at.utcoffset() == timedelta(0)
    assert hit.envelope_recipients == ("bob@acme.test", "eve@acme.test")
    assert "Quarterly report" in repr(hit) and r.id in repr(hit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.subject = "changed"  # type: ignore[misc]
    message = acme.get(r.id)
    assert message.text.strip() == "numbers inside"
    assert message.attachment_text == ""
    assert dataclasses.replace(message).raw == raw
    assert acme.get_hit(r.id) == hit


def test_duplicates_merge_envelopes(acme: ama.Tenant) -> None:
    raw = mail("dup")
    first = acme.ingest(raw, rcpt_to=["bob@acme.test"])
    second = acme.ingest(raw, rcpt_to=["carol@acme.test"])
    assert second.duplicate and second.id == first.id
    assert acme.get(first.id).envelope_recipients == ("bob@acme.test", "carol@acme.test")
    assert acme.stats() == ama.TenantStats(messages=1, raw_bytes=len(raw), stored_bytes=acme.stats().stored_bytes, duplicates=1)


def test_ingest_many_batches_and_refusals(acme: ama.Tenant) -> None:
    def items():  # a generator: consumed lazily
        for i in range(25):
            yield mail(f"bulk {i}")
        yield b""
        yield ama.Mail(mail("with envelope"), mail_from="x@y.test", rcpt_to=("bcc@acme.test",))

    results = acme.ingest_many(items(), batch_size=7)
    assert len(results) == 27
    assert all(isinstance(r, ama.Receipt) for r in results[:25])
    assert isinstance(results[25], ama.IngestError) and "empty" in str(results[25])
    last = results[26]
    assert isinstance(last, ama.Receipt)
    assert acme.count("subject:bulk") == 25
    assert acme.count("to:bcc@acme.test") == 1
    assert acme.get(last.id).deliveries[0].mail_from == "x@y.test"


def test_paging_is_lazy_and_complete(acme: ama.Tenant) -> None:
    n = 230
    acme.ingest_many(
        mail(f"page {i}", date=(datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(hours=i)).strftime("%a, %d %b %Y %H:%M:%S +0000"))
        for i in range(n)
    )
    results = acme.search("subject:page", page_size=50)
    assert results.total == n
    hits = list(results)
    assert len(hits) == n and len({h.id for h in hits}) == n
    dates = [h.date for h in hits]
    assert dates == sorted(dates, reverse=True)  # "date": newest first
    oldest = [h.date for h in acme.search("subject:page", sort="oldest", page_size=30)]
    assert oldest == sorted(dates)
    limited = acme.search("subject:page", limit=75, page_size=20)
    assert len(list(limited)) == 75 and limited.total == n
    assert list(acme.search("subject:page", limit=0)) == []
    assert acme.count("subject:page") == n
    assert len(list(acme.search("page", sort="relevance", limit=5))) == 5


def test_pathlib_and_str_paths(tmp_path: Path) -> None:
    for path in (tmp_path / "a", str(tmp_path / "b")):
        with ama.Archive.create(path, passphrase="long enough passphrase", fast_kdf=True) as a:
            assert a.path == Path(path)
        with ama.Archive.open(path, passphrase="long enough passphrase") as a:
            assert a.tenants() == []


def test_key_file(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_bytes(bytes(range(32)))
    with ama.Archive.create(tmp_path / "k", key_file=key) as a:
        a.create_tenant("t1").ingest(mail("keyed"))
    with ama.Archive.open(tmp_path / "k", key_file=str(key)) as a:
        assert a.tenant("t1").count() == 1
    with pytest.raises(ama.KeyStoreError, match="sealed with a key file"):
        ama.Archive.open(tmp_path / "k", passphrase="not the key file at all")


def test_tenants(archive: ama.Archive) -> None:
    t = archive.create_tenant("beta", name="Beta", region="us", domains="beta.test", retention="6y")
    info = t.info()
    assert (info.id, info.name, info.region, info.domains, info.retention) == ("beta", "Beta", "us", ("beta.test",), "6y")
    assert info.created_at.tzinfo is not None
    assert [x.id for x in archive.tenants()] == ["beta"]
    assert isinstance(archive.tenant("beta"), ama.Tenant)
    assert t.reindex() == 0


@pytest.mark.skipif(not (CORPUS / "parser-tests").is_dir(), reason="SKIPPED: ../shared/corpus absent")
def test_corpus_parser_tests_round_trip(acme: ama.Tenant) -> None:
    """Odd and malformed real MIME: every archived message comes back byte-exact."""
    files = sorted((CORPUS / "parser-tests").rglob("*.eml"))
    raws = [p.read_bytes() for p in files]
    results = acme.ingest_many(raws)
    checked = 0
    for raw, r in zip(raws, results):
        if isinstance(r, ama.Receipt):
            m = acme.get(r.id)
            assert m.raw == raw
            m.as_email()  # the stdlib parser copes with all of them
            checked += 1
    assert checked >= len(files) * 0.9
