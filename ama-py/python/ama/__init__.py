"""ama: an embeddable, multi-tenant e-mail archive, for Python scripts.

::

    import ama

    with ama.Archive.open("/srv/ama", passphrase=secret) as archive:
        acme = archive.tenant("acme")
        receipt = acme.ingest(raw_bytes, rcpt_to=["bob@acme.example"])
        for hit in acme.search('from:ceo@acme.example "quarterly report"', limit=20):
            print(hit.date, hit.from_, hit.subject)
        message = acme.get(receipt.id)
        assert message.raw == raw_bytes
        print(message.as_email()["Subject"])

The engine is Rust (``ama._ama``); every heavy call releases the GIL. The
query language is described in docs/SEARCH.md. Errors are subclasses of
:class:`ama.Error`.
"""

from . import _ama
from ._archive import Archive, SearchResults, Session, StrPath, Tenant, TenantView
from ._errors import (
    AccessDenied,
    ArchiveClosed,
    CatalogError,
    CryptoError,
    DataDirError,
    Error,
    IdentityError,
    IngestError,
    InvalidArgument,
    KeyStoreError,
    LockedOut,
    NotFound,
    QueryError,
    SearchIndexError,
    StoreError,
    TenantError,
    TenantExists,
    Unauthenticated,
    UnknownTenant,
    WeakPassword,
    WrongPassphrase,
)
from ._types import (
    Attachment,
    AuditEntry,
    AuditReport,
    DeletionResult,
    Delivery,
    Hit,
    ImportProgress,
    ImportSummary,
    Mail,
    Mailbox,
    Message,
    Receipt,
    Refusal,
    TenantInfo,
    TenantStats,
    User,
)

__version__: str = _ama.__version__

__all__ = [
    "Archive",
    "Session",
    "User",
    "AuditEntry",
    "AuditReport",
    "DeletionResult",
    "Unauthenticated",
    "LockedOut",
    "IdentityError",
    "WeakPassword",
    "TenantView",
    "Tenant",
    "SearchResults",
    "StrPath",
    "Mailbox",
    "Attachment",
    "Delivery",
    "Receipt",
    "Hit",
    "Message",
    "Mail",
    "TenantInfo",
    "TenantStats",
    "ImportProgress",
    "ImportSummary",
    "Refusal",
    "Error",
    "ArchiveClosed",
    "InvalidArgument",
    "QueryError",
    "AccessDenied",
    "NotFound",
    "IngestError",
    "TenantError",
    "UnknownTenant",
    "TenantExists",
    "KeyStoreError",
    "WrongPassphrase",
    "CryptoError",
    "StoreError",
    "CatalogError",
    "SearchIndexError",
    "DataDirError",
]
