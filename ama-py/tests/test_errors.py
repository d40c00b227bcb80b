"""Every engine error surfaces as its documented class of ama.Error."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

import ama

from conftest import PASSPHRASE, mail

ALL = [
    ama.ArchiveClosed, ama.InvalidArgument, ama.QueryError, ama.AccessDenied, ama.NotFound,
    ama.IngestError, ama.TenantError, ama.UnknownTenant, ama.TenantExists, ama.KeyStoreError,
    ama.WrongPassphrase, ama.CryptoError, ama.StoreError, ama.CatalogError,
    ama.SearchIndexError, ama.DataDirError,
]


def test_hierarchy() -> None:
    for cls in ALL:
        assert issubclass(cls, ama.Error), cls
        assert cls.__module__ == "ama" and getattr(ama, cls.__name__) is cls
    assert issubclass(ama.Error, Exception)
    assert issubclass(ama.WrongPassphrase, ama.KeyStoreError)
    assert issubclass(ama.UnknownTenant, ama.TenantError) and issubclass(ama.UnknownTenant, LookupError)
    for cls in (ama.QueryError, ama.InvalidArgument, ama.IngestError, ama.TenantError):
        assert issubclass(cls, ValueError)
    assert issubclass(ama.NotFound, LookupError)


def test_wrong_passphrase(tmp_path: Path) -> None:
    ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True).close()
    with pytest.raises(ama.WrongPassphrase, match="wrong passphrase"):
        ama.Archive.open(tmp_path / "d", passphrase="not the passphrase")


def test_unlock_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="passphrase= or key_file="):
        ama.Archive.open(tmp_path)
    with pytest.raises(TypeError, match="not both"):
        ama.Archive.open(tmp_path, passphrase="x" * 10, key_file=tmp_path / "k")
    with pytest.raises(ama.KeyStoreError, match="too short"):
        ama.Archive.create(tmp_path / "weak", passphrase="short", fast_kdf=True)
    with pytest.raises(ama.KeyStoreError, match="32 bytes"):
        (tmp_path / "bad.key").write_bytes(b"short")
        ama.Archive.create(tmp_path / "kf", key_file=tmp_path / "bad.key")


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ama.DataDirError, match="not an ama archive"):
        ama.Archive.open(tmp_path, passphrase=PASSPHRASE)
    ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True).close()
    with pytest.raises(ama.DataDirError, match="already holds an archive"):
        ama.Archive.create(tmp_path / "d", passphrase=PASSPHRASE, fast_kdf=True)


def test_query_error(acme: ama.Tenant) -> None:
    with pytest.raises(ama.QueryError) as e:
        acme.search("from: alice")
    assert e.value.position == 5
    assert str(e.value) == "missing value after 'from:' at position 5"
    with pytest.raises(ValueError):
        acme.count("(a OR b")


def test_not_found(acme: ama.Tenant) -> None:
    missing = "01JD3X00000000000000000000"
    with pytest.raises(ama.NotFound) as e:
        acme.get(missing)
    assert e.value.id == missing
    with pytest.raises(LookupError):
        acme.get_hit(missing)
    with pytest.raises(ama.InvalidArgument, match="invalid message id"):
        acme.get("not-an-id")


def test_tenant_errors(archive: ama.Archive) -> None:
    with pytest.raises(ama.UnknownTenant, match="does not exist"):
        archive.tenant("nobody")
    archive.create_tenant("acme")
    with pytest.raises(ama.TenantExists):
        archive.create_tenant("acme")
    with pytest.raises(ama.TenantError, match="invalid tenant id"):
        archive.create_tenant("ACME!")
    with pytest.raises(ama.TenantError, match="retention"):
        archive.create_tenant("x", retention="forever")
    with pytest.raises(ama.TenantError, match="region"):
        archive.create_tenant("x", region="mars base")
    with pytest.raises(ama.TenantError, match="domain"):
        archive.create_tenant("x", domains=["not a domain"])


def test_ingest_errors(acme: ama.Tenant) -> None:
    with pytest.raises(ama.IngestError, match="empty message"):
        acme.ingest(b"   \r\n")
    with pytest.raises(ama.IngestError, match="not an e-mail message"):
        acme.ingest(bytes(range(256)) * 4)
    with pytest.raises(ama.InvalidArgument, match="timezone-aware"):
        acme.ingest(mail("naive"), received_at=datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        acme.ingest("not bytes")  # type: ignore[arg-type]


def test_argument_errors(acme: ama.Tenant, archive: ama.Archive) -> None:
    with pytest.raises(ama.InvalidArgument, match="unknown sort"):
        acme.search("", sort="size")  # type: ignore[arg-type]
    with pytest.raises(ama.InvalidArgument, match="page_size"):
        acme.search("", page_size=0)
    with pytest.raises(ama.InvalidArgument, match="as_end_user"):
        archive.tenant("acme", as_end_user=[])
    with pytest.raises(ama.InvalidArgument):
        acme.ingest_many([], batch_size=0)
