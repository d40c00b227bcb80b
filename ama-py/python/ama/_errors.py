"""The exception hierarchy of ``ama``: one class per kind of engine error.

Every error raised by the package is an :class:`Error`. Errors about a bad
value a caller passed are also :class:`ValueError`; "not found" errors are
also :class:`LookupError`, so generic handlers keep working.

::

    Error
    ├── ArchiveClosed         the archive was closed; open it again
    ├── InvalidArgument       (ValueError) a bad id, limit, sort, datetime …
    ├── QueryError            (ValueError) a search that cannot be parsed; .position
    ├── AccessDenied          the principal may not do this
    ├── Unauthenticated       a login or session was refused (same message whatever was wrong)
    │   └── LockedOut         too many failed logins; .retry_after seconds
    ├── IdentityError         (ValueError) a user, address or directory setting was refused
    │   └── WeakPassword      the password does not meet the policy (the message says why)
    ├── NotFound              (LookupError) no such message, or not visible; .id
    ├── IngestError           (ValueError) a message refused at ingest
    ├── TenantError           (ValueError) invalid tenant id or setting
    │   ├── UnknownTenant     (LookupError)
    │   └── TenantExists
    ├── KeyStoreError         the key store cannot be opened or used
    │   └── WrongPassphrase   the passphrase or key file does not unlock it
    ├── CryptoError           stored data failed authentication (altered, or wrong key)
    ├── StoreError            the blob store failed
    ├── CatalogError          the catalog failed or is corrupt
    ├── SearchIndexError      the full-text index failed
    └── DataDirError          the data directory is missing, not an archive, or unusable
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "Error",
    "ArchiveClosed",
    "InvalidArgument",
    "QueryError",
    "AccessDenied",
    "Unauthenticated",
    "LockedOut",
    "IdentityError",
    "WeakPassword",
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


class Error(Exception):
    """Base class of every error raised by ama."""


class ArchiveClosed(Error):
    """The archive was closed (``Archive.close()`` or the end of a ``with`` block)."""


class InvalidArgument(Error, ValueError):
    """An argument is malformed or out of range."""


class QueryError(Error, ValueError):
    """A search query could not be parsed (see docs/SEARCH.md).

    ``position`` is the 0-based character offset of the problem.
    """

    position: Optional[int]

    def __init__(self, message: str, position: Optional[int] = None) -> None:
        super().__init__(message)
        self.position = position


class AccessDenied(Error):
    """The principal may not do this."""


class Unauthenticated(Error):
    """A login, token or session was refused: unknown user, wrong password,
    disabled user, or an expired, idle or logged-out session (the message is
    the same whatever was wrong)."""


class LockedOut(Unauthenticated):
    """Too many failed logins; ``retry_after`` is the number of seconds to wait."""

    retry_after: Optional[int]

    def __init__(self, message: str, retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdentityError(Error, ValueError):
    """A user id, address, role or directory setting was refused, or the user is unknown."""


class WeakPassword(IdentityError):
    """The password does not meet the policy; the message says why."""


class NotFound(Error, LookupError):
    """No such message, or one the principal may not see (the two are not told apart).

    ``id`` is the message id that was asked for.
    """

    id: Optional[str]

    def __init__(self, message: str, id: Optional[str] = None) -> None:
        super().__init__(message)
        self.id = id


class IngestError(Error, ValueError):
    """A message was refused at ingest (empty, too large, not mail); nothing was stored."""


class TenantError(Error, ValueError):
    """A tenant id, name or setting is invalid."""


class UnknownTenant(TenantError, LookupError):
    """No tenant with this id."""


class TenantExists(TenantError):
    """A tenant with this id exists already."""


class KeyStoreError(Error):
    """The key store could not be opened or used (bad key file, weak passphrase, …)."""


class WrongPassphrase(KeyStoreError):
    """The passphrase or key file does not unlock the key store."""


class CryptoError(Error):
    """Stored data failed authentication: it was altered, or the key is wrong."""


class StoreError(Error):
    """The blob store failed (I/O, a missing or corrupt blob)."""


class CatalogError(Error):
    """The catalog database failed or holds a corrupt record."""


class SearchIndexError(Error):
    """The full-text index failed."""


class DataDirError(Error):
    """The data directory is missing, not an ama archive, or could not be set up."""


# Show the public name (ama.QueryError, not ama._errors.QueryError) in
# tracebacks and reprs; every class is exported from the package.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, Error):
        _cls.__module__ = "ama"
del _cls
