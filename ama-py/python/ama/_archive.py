"""``Archive``, tenant handles and lazy search results."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import (
    Callable,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Tuple,
    Type,
    Union,
    overload,
)

from . import _ama
from ._errors import IngestError, InvalidArgument
from ._types import (
    AuditEntry,
    AuditReport,
    DeletionResult,
    Hit,
    ImportProgress,
    ImportSummary,
    Mail,
    Message,
    Receipt,
    Refusal,
    TenantInfo,
    TenantStats,
    User,
    _datetime,
    _micros,
)

__all__ = ["Archive", "Session", "TenantView", "Tenant", "SearchResults", "StrPath"]

#: A file system path: ``str`` or ``pathlib.Path`` (any ``os.PathLike[str]``).
StrPath = Union[str, "os.PathLike[str]"]


_SORTS = ("date", "newest", "oldest", "relevance")


class Archive:
    """An open archive: a data directory unlocked with its passphrase or key file.

    Use it as a context manager; leaving the block closes it::

        with ama.Archive.open("/srv/ama", passphrase=secret) as archive:
            acme = archive.tenant("acme")
            for hit in acme.search("from:ceo@acme.example after:2024-01-01"):
                print(hit.date, hit.subject)

    The session acts as the operator: ``archive.tenant(id)`` reads and writes
    all mail of a tenant (the engine's auditor role).
    ``archive.tenant(id, as_end_user=[...])`` gives a read-only view scoped to
    one user's addresses. An ``Archive`` may be shared between threads; heavy
    calls release the GIL.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _ama.Archive) -> None:
        """Not for direct use: see :meth:`open` and :meth:`create`."""
        self._native = native

    @classmethod
    def open(
        cls,
        path: StrPath,
        *,
        passphrase: Optional[str] = None,
        key_file: Optional[StrPath] = None,
    ) -> Archive:
        """Opens the archive in ``path`` with its passphrase or its 32-byte key file.

        Raises :class:`ama.WrongPassphrase` if it does not unlock the key
        store and :class:`ama.DataDirError` if ``path`` holds no archive.
        """
        return cls(_ama.Archive.open(path, passphrase=passphrase, key_file=key_file))

    @classmethod
    def create(
        cls,
        path: StrPath,
        *,
        passphrase: Optional[str] = None,
        key_file: Optional[StrPath] = None,
        fast_kdf: bool = False,
    ) -> Archive:
        """Creates a new, empty archive in ``path`` (created if missing).

        ``fast_kdf=True`` derives the master key with cheap argon2id
        parameters: for tests and notebooks only, never for real mail.
        """
        return cls(
            _ama.Archive.create(
                path, passphrase=passphrase, key_file=key_file, fast_kdf=fast_kdf
            )
        )

    @property
    def path(self) -> Path:
        """The data directory."""
        return Path(self._native.path)

    @property
    def closed(self) -> bool:
        """Whether the archive was closed."""
        return self._native.closed

    def close(self) -> None:
        """Closes the archive: flushes the indexes and releases the data directory.

        Afterwards every call on it (and on its tenants and unfinished
        searches) raises :class:`ama.ArchiveClosed`; results already
        returned stay usable. A call running in another thread finishes
        first. Closing twice is harmless.
        """
        self._native.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ama.Archive {self._native.path!r} {state}>"

    def tenants(self) -> List[TenantInfo]:
        """Every tenant's settings, by id."""
        return [TenantInfo._from_native(t) for t in self._native.tenants()]

    def create_tenant(
        self,
        id: str,
        *,
        name: Optional[str] = None,
        region: str = "eu",
        domains: Iterable[str] = (),
        retention: str = "10y",
    ) -> Tenant:
        """Creates a tenant with a fresh key and returns its operator handle.

        ``id``: 1–63 characters ``a-z``, ``0-9``, ``-``. ``region``: ``eu``,
        ``us`` or a custom name. ``retention``: the default retention, e.g.
        ``10y``, ``6m``, ``90d``. Raises :class:`ama.TenantExists`.
        """
        if isinstance(domains, str):
            domains = [domains]
        self._native.create_tenant(
            id, name=name, region=region, domains=list(domains), retention=retention
        )
        return Tenant(self, id, None)

    @overload
    def tenant(self, id: str) -> Tenant: ...

    @overload
    def tenant(self, id: str, *, as_end_user: None) -> Tenant: ...

    @overload
    def tenant(self, id: str, *, as_end_user: Union[str, Iterable[str]]) -> TenantView: ...

    def tenant(
        self, id: str, *, as_end_user: Union[str, Iterable[str], None] = None
    ) -> Union[Tenant, TenantView]:
        """A handle on tenant ``id`` (raises :class:`ama.UnknownTenant`).

        Without ``as_end_user``: the operator's view (the engine's auditor
        role): every message of the tenant, plus ingest and import.

        With ``as_end_user=["alice@acme.example", ...]``: a read-only view
        with the end-user role for these addresses; searches and reads see
        only mail where one of them is a sender, recipient or envelope
        recipient (and only these envelope recipients). This does not
        authenticate anyone (whoever opened the archive holds its key): use
        it to act for a user your script has already authenticated, or use
        :meth:`login` to act with a user's own rights.
        """
        self._native.tenant(id)
        if as_end_user is None:
            return Tenant(self, id, None)
        addresses = (as_end_user,) if isinstance(as_end_user, str) else tuple(as_end_user)
        if not addresses or not all(isinstance(a, str) and a.strip() for a in addresses):
            raise InvalidArgument("as_end_user needs at least one non-empty address")
        return TenantView(self, id, addresses)

    def verify(self) -> bool:
        """Verifies every tenant (see :meth:`Tenant.verify`); ``True`` when
        no tenant has a problem."""
        return all(not Tenant(self, t.id, None).verify()[2] for t in self.tenants())

    def login(
        self, tenant: str, user: str, password: str, *, source: Optional[str] = None
    ) -> Session:
        """Logs ``user`` of ``tenant`` in with his password (local or
        through the tenant's directory) and returns a :class:`Session`
        whose reads follow that user's rights. Raises
        :class:`ama.Unauthenticated` (or :class:`ama.LockedOut`). The
        attempt is written to the tenant's audit log.
        """
        token, uid, roles, expires = self._native.login(tenant, user, password, source=source)
        return Session(self, tenant, token, uid, tuple(roles), _datetime(expires))


class Session:
    """A logged-in user: ``session.tenant`` reads with his rights (an end
    user sees only his own mail, an admin without the auditor role no mail).

    The token is checked by the engine on every call, so a session that was
    logged out, expired, or whose user was disabled stops working at once.
    Use it as a context manager to log out at the end of the block.
    """

    __slots__ = ("_archive", "_tenant", "_token", "user", "roles", "expires_at")

    def __init__(
        self,
        archive: Archive,
        tenant: str,
        token: str,
        user: str,
        roles: Tuple[str, ...],
        expires_at: datetime,
    ) -> None:
        """Not for direct use: see :meth:`Archive.login`."""
        self._archive = archive
        self._tenant = tenant
        self._token = token
        self.user: str = user
        self.roles: Tuple[str, ...] = roles
        self.expires_at: datetime = expires_at

    @property
    def tenant(self) -> TenantView:
        """The session's tenant, seen with the user's rights."""
        return TenantView(self._archive, self._tenant, None, token=self._token)

    @property
    def token(self) -> str:
        """The bearer token (keep it secret)."""
        return self._token

    def logout(self) -> None:
        """Ends the session (written to the audit log)."""
        self._archive._native.logout(self._token)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.logout()

    def __repr__(self) -> str:
        return f"<ama.Session {self.user!r}@{self._tenant!r} roles={list(self.roles)!r}>"


class TenantView:
    """Read access to one tenant's mail for one principal.

    ``end_user`` is ``None`` for the operator's view (all mail), or the
    addresses of the end user whose mail this view is scoped to.
    """

    __slots__ = ("_archive", "_id", "_end_user", "_token")

    def __init__(
        self,
        archive: Archive,
        id: str,
        end_user: Optional[Tuple[str, ...]],
        *,
        token: Optional[str] = None,
    ) -> None:
        """Not for direct use: see :meth:`Archive.tenant` and :meth:`Archive.login`."""
        self._archive = archive
        self._id = id
        self._end_user = end_user
        self._token = token

    @property
    def id(self) -> str:
        """The tenant id."""
        return self._id

    @property
    def archive(self) -> Archive:
        """The archive this tenant lives in."""
        return self._archive

    @property
    def end_user(self) -> Optional[Tuple[str, ...]]:
        """The end user's addresses, or ``None`` for the operator's view."""
        return self._end_user

    def _scope(self) -> Union[None, str, List[str]]:
        if self._token is not None:
            return self._token
        return None if self._end_user is None else list(self._end_user)

    def __repr__(self) -> str:
        if self._token is not None:
            who = "a logged-in user"
        elif self._end_user is None:
            who = "operator"
        else:
            who = f"end user {list(self._end_user)!r}"
        return f"<ama.{type(self).__name__} {self._id!r} as {who}>"

    def audit(
        self,
        *,
        since: Optional[datetime] = None,
        action: Optional[str] = None,
        limit: int = 1000,
    ) -> List[AuditEntry]:
        """Entries of the tenant's audit log, oldest first (auditors only;
        reading it is itself audited). ``action`` filters by name
        (``"search"``, ``"login"``, ``"user-change"``, …); ``since`` must be
        timezone-aware.
        """
        since_s = None if since is None else _micros(since) // 1_000_000
        rows = self._archive._native.audit(
            self._id, self._scope(), since=since_s, action=action, limit=limit
        )
        return [AuditEntry._from_native(r) for r in rows]

    def export(
        self,
        path: StrPath,
        *,
        query: Optional[str] = None,
        ids: Optional[Iterable[str]] = None,
        format: Literal["zip", "mbox"] = "zip",
        hold: Optional[str] = None,
    ) -> int:
        """Exports what this principal may see — everything, a query's
        results, listed ids, or what the legal hold named ``hold`` covers
        (auditors) — to a new file at ``path``: a zip of ``.eml``
        files with ``manifest.csv``/``manifest.json``, or an mboxrd file.
        Give at most one of ``query``, ``ids`` and ``hold``.
        Each message's bytes are exactly the ingested ones. Returns the
        number of messages exported; one audit entry."""
        exported, _ = self._archive._native.export(
            self._id,
            self._scope(),
            os.fspath(path),
            query=query,
            ids=None if ids is None else list(ids),
            format=format,
            hold=hold,
        )
        return exported

    def verify_audit(self) -> AuditReport:
        """Recomputes the audit log's hash chain and reports every broken
        link (an edited, deleted or reordered entry). Auditors only."""
        entries, head, problems = self._archive._native.verify_audit(self._id, self._scope())
        return AuditReport(entries, head, tuple((s, r) for s, r in problems))

    def search(
        self,
        query: str = "",
        *,
        limit: Optional[int] = None,
        sort: Literal["date", "newest", "oldest", "relevance"] = "date",
        page_size: int = 100,
    ) -> SearchResults:
        """Searches with the query language of docs/SEARCH.md.

        Returns a lazy iterator of :class:`Hit`: the first page is fetched
        now (so a bad query raises :class:`ama.QueryError` here), further
        pages of ``page_size`` when iteration reaches them. ``limit`` caps
        the number of hits; ``.total`` tells how many match. ``sort``:
        ``"date"`` (newest first), ``"oldest"`` or ``"relevance"``.
        """
        return SearchResults(self, query, sort=sort, limit=limit, page_size=page_size)

    def count(self, query: str = "") -> int:
        """How many messages match ``query`` (for this principal)."""
        total, _ = self._archive._native.search(
            self._id, self._scope(), query, offset=0, limit=1, sort="date"
        )
        return total

    def get(self, id: str) -> Message:
        """The message ``id`` with its raw bytes (raises :class:`ama.NotFound`).

        The bytes are exactly those that were archived; the engine checks
        them against the SHA-256 recorded at ingest before returning them.
        """
        info, raw = self._archive._native.get(self._id, self._scope(), id, raw=True)
        assert raw is not None
        return Message._from_native_raw(info, raw)

    def get_hit(self, id: str) -> Hit:
        """The metadata of message ``id`` only (no content is decrypted)."""
        info, _ = self._archive._native.get(self._id, self._scope(), id, raw=False)
        return Hit._from_native(info)


class Tenant(TenantView):
    """The operator's handle on a tenant: all of its mail, ingest and import."""

    __slots__ = ()

    def info(self) -> TenantInfo:
        """The tenant's settings."""
        return TenantInfo._from_native(self._archive._native.tenant(self._id))

    def stats(self) -> TenantStats:
        """Counters: messages, raw and stored bytes, duplicates."""
        return TenantStats(*self._archive._native.stats(self._id))

    def reindex(self) -> int:
        """Rebuilds the full-text index from the catalog and the blobs."""
        return self._archive._native.reindex(self._id)

    def add_user(
        self,
        id: str,
        *,
        roles: Iterable[str],
        addresses: Iterable[str] = (),
        display_name: Optional[str] = None,
        password: Optional[str] = None,
    ) -> User:
        """Adds a user. ``roles``: ``"end-user"``, ``"auditor"``, ``"admin"``.
        A password is checked against the policy (:class:`ama.WeakPassword`)."""
        return User._from_native(
            self._archive._native.add_user(
                self._id,
                id,
                display_name=display_name,
                addresses=list(addresses),
                roles=list(roles),
                password=password,
            )
        )

    def users(self) -> List[User]:
        """The tenant's users, by id."""
        return [User._from_native(u) for u in self._archive._native.users(self._id)]

    def _change(self, id: str, what: str, value: str) -> User:
        return User._from_native(self._archive._native.change_user(self._id, id, what, value))

    def set_password(self, id: str, password: str) -> User:
        """Sets a user's password (checked against the policy); lifts a lockout."""
        return self._change(id, "password", password)

    def disable_user(self, id: str) -> User:
        """Disables a user: no more logins, his sessions stop working."""
        return self._change(id, "active", "false")

    def enable_user(self, id: str) -> User:
        """Enables a disabled user."""
        return self._change(id, "active", "true")

    def grant_role(self, id: str, role: str) -> User:
        """Grants ``role`` (``"end-user"``, ``"auditor"``, ``"admin"``)."""
        return self._change(id, "grant", role)

    def revoke_role(self, id: str, role: str) -> User:
        """Revokes ``role`` (a user keeps at least one)."""
        return self._change(id, "revoke", role)

    def place_hold(
        self,
        name: str,
        *,
        reason: str,
        query: Optional[str] = None,
        custodian: Optional[str] = None,
        ids: Optional[Iterable[str]] = None,
    ) -> None:
        """Places a legal hold by exactly one of ``query``, ``custodian``
        (an address) or ``ids``. Held messages survive sweeps and deletion
        requests until the hold is released."""
        given = [x is not None for x in (query, custodian, ids)]
        if sum(given) != 1:
            raise InvalidArgument("give exactly one of query=, custodian= or ids=")
        if query is not None:
            kind, values = "query", [query]
        elif custodian is not None:
            kind, values = "custodian", [custodian]
        else:
            kind, values = "ids", list(ids or ())
        self._archive._native.place_hold(self._id, name, kind, values, reason)

    def release_hold(self, name: str, *, reason: str) -> None:
        """Releases an active hold (audited)."""
        self._archive._native.release_hold(self._id, name, reason)

    def holds(self) -> List[Tuple[str, str, str, datetime, bool]]:
        """``(name, scope, reason, placed_at, active)`` of every hold."""
        return [
            (n, sc, r, _datetime(at), active)
            for n, sc, r, at, active in self._archive._native.holds(self._id)
        ]

    def set_retention(
        self,
        default: str,
        *,
        year_end: bool = False,
        rules: Iterable[Tuple[str, str, str]] = (),
        minimum: Optional[str] = None,
        locked: bool = False,
        four_eyes: bool = False,
    ) -> int:
        """Sets the retention policy: ``default`` like ``"10y"``, ``rules``
        as ``(kind, value, period)`` with kind ``address``, ``domain``,
        ``direction`` or ``query`` (a search query; first match wins), periods counted from the end of the
        message's year with ``year_end=True`` (GoBD). Returns how many
        messages' retain-until were recomputed."""
        return self._archive._native.set_retention(
            self._id,
            default,
            year_end=year_end,
            rules=list(rules),
            minimum=minimum,
            locked=locked,
            four_eyes=four_eyes,
        )

    def request_deletion(
        self,
        *,
        reason: str,
        ids: Optional[Iterable[str]] = None,
        query: Optional[str] = None,
    ) -> DeletionResult:
        """Deletes the messages listed in ``ids`` or found now by ``query``
        (exactly one; an empty query is refused). Held or still retained
        messages are kept back. With four-eyes on, the request is only
        recorded (``status == "pending"``) until a second auditor approves
        it; a query's request holds the ids it found then."""
        if (ids is None) == (query is None):
            raise InvalidArgument("give exactly one of ids= and query=")
        status, request, deleted, kept = self._archive._native.request_deletion(
            self._id,
            reason,
            ids=None if ids is None else list(ids),
            query=query,
        )
        return DeletionResult(status, request, tuple(deleted), tuple(kept))

    def retain_until(self, id: str) -> datetime:
        """When message ``id`` may be deleted."""
        return _datetime(self._archive._native.retain_until(self._id, id))

    def sweep(self, at: Optional[datetime] = None) -> Tuple[List[str], List[str]]:
        """Deletes every message past its retention that no hold covers
        (as of ``at``, default now). Returns ``(deleted ids, held ids)``."""
        at_s = None if at is None else _micros(at) // 1_000_000
        deleted, held, _ = self._archive._native.sweep(self._id, at_s)
        return deleted, held

    def verify(self) -> Tuple[int, List[Tuple[str, str]], List[Tuple[Optional[str], str]]]:
        """Decrypts every message against the hash-chained ingest log:
        ``(verified, [(deleted id, reason)], [(id, problem)])``."""
        verified, tombs, problems = self._archive._native.verify(self._id)
        return verified, [(i, r) for i, r, _ in tombs], problems

    def add_address(self, id: str, address: str) -> User:
        """Adds one of the user's own addresses."""
        return self._change(id, "add_address", address)

    def ingest(
        self,
        raw: bytes,
        *,
        mail_from: Optional[str] = None,
        rcpt_to: Iterable[str] = (),
        received_at: Optional[datetime] = None,
    ) -> Receipt:
        """Archives one message, byte-exact; returns once it is durable and searchable.

        ``mail_from``/``rcpt_to``: the SMTP envelope (a Bcc recipient is
        only in ``rcpt_to``). ``received_at``: timezone-aware; default now.
        Raises :class:`ama.IngestError` for input that is not mail.
        """
        if isinstance(rcpt_to, str):
            rcpt_to = [rcpt_to]
        return Receipt._from_native(
            self._archive._native.ingest(
                self._id,
                raw,
                mail_from=mail_from,
                rcpt_to=list(rcpt_to),
                received_at_us=None if received_at is None else _micros(received_at),
            )
        )

    def ingest_many(
        self, items: Iterable[Union[bytes, Mail]], *, batch_size: int = 500
    ) -> List[Union[Receipt, IngestError]]:
        """Archives many messages in batches (one durable commit per batch).

        ``items``: raw ``bytes`` or :class:`Mail` (raw bytes with an
        envelope), consumed lazily. Returns one entry per item, in order: a
        :class:`Receipt`, or, for a message that was refused, the
        :class:`ama.IngestError` saying why (returned, not raised, so the
        receipts of the rest are not lost). Other errors are raised; the
        batches before them are durable.
        """
        if batch_size < 1:
            raise InvalidArgument("batch_size must be at least 1")
        out: List[Union[Receipt, IngestError]] = []
        batch: List[Tuple[bytes, Optional[str], List[str], Optional[int]]] = []

        def flush() -> None:
            for receipt, refused in self._archive._native.ingest_batch(self._id, batch):
                if receipt is not None:
                    out.append(Receipt._from_native(receipt))
                else:
                    out.append(IngestError(refused or "refused"))
            batch.clear()

        for item in items:
            if isinstance(item, Mail):
                rcpt = [item.rcpt_to] if isinstance(item.rcpt_to, str) else list(item.rcpt_to)
                at = None if item.received_at is None else _micros(item.received_at)
                batch.append((item.raw, item.mail_from, rcpt, at))
            else:
                batch.append((item, None, [], None))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return out

    def import_path(
        self,
        path: Union[StrPath, Iterable[StrPath]],
        *,
        progress: Optional[Callable[[ImportProgress], object]] = None,
        progress_every: int = 1000,
        batch_size: int = 500,
        limit: Optional[int] = None,
    ) -> ImportSummary:
        """Imports ``.eml`` files, directories, mbox files and Maildirs.

        Runs the engine's import pipeline (the one ``ama import`` uses: a
        reader thread, batches with one durable commit each) with the GIL
        released. ``progress`` is called with running totals every
        ``progress_every`` messages and once at the end. Messages that are
        not mail are refused and listed in the summary; the import goes on.

        If ``progress`` raises, or Ctrl-C is pressed, the import stops after
        the batch in flight and the exception is raised; every message
        reported before is archived (durably).
        """
        paths: List[StrPath]
        if isinstance(path, (str, os.PathLike)):
            paths = [path]
        else:
            paths = list(path)
        callback: Optional[Callable[[int, int, int, int], object]] = None
        if progress is not None:
            report = progress

            def callback(i: int, d: int, r: int, b: int) -> object:
                return report(ImportProgress(i, d, r, b))

        imported, duplicates, refused, size, refusals = self._archive._native.import_paths(
            self._id,
            paths,
            progress=callback,
            progress_every=progress_every,
            batch=batch_size,
            limit=limit,
        )
        return ImportSummary(
            imported,
            duplicates,
            refused,
            size,
            tuple(Refusal(o, r) for o, r in refusals),
        )


class SearchResults(Iterator[Hit]):
    """A lazy iterator over the hits of a search, fetched page by page.

    ``total`` is the number of matching messages (for this principal), known
    from the first page. Paging is by offset: mail archived while iterating
    may shift later pages. Iterating past a closed archive raises
    :class:`ama.ArchiveClosed`.
    """

    __slots__ = ("_view", "_query", "_sort", "_limit", "_page_size", "_offset", "_page", "_total")

    def __init__(
        self,
        view: TenantView,
        query: str,
        *,
        sort: Literal["date", "newest", "oldest", "relevance"] = "date",
        limit: Optional[int] = None,
        page_size: int = 100,
    ) -> None:
        """Not for direct use: see :meth:`TenantView.search`."""
        if sort not in _SORTS:
            raise InvalidArgument(
                f"unknown sort {sort!r}: use 'date' (newest first), 'oldest' or 'relevance'"
            )
        if limit is not None and limit < 0:
            raise InvalidArgument("limit must not be negative")
        if not 1 <= page_size <= _ama.MAX_PAGE:
            raise InvalidArgument(f"page_size must be between 1 and {_ama.MAX_PAGE}")
        self._view = view
        self._query = query
        self._sort: str = sort
        self._limit = limit
        self._page_size = page_size
        self._offset = 0
        self._page: List[Hit] = []
        self._total = 0
        self._fetch()

    def _fetch(self) -> None:
        want = self._page_size
        if self._limit is not None:
            want = min(want, self._limit - self._offset)
        if want <= 0:
            self._page = []
            if self._offset == 0:
                self._total = self._view.count(self._query)
            return
        total, hits = self._view._archive._native.search(
            self._view._id,
            self._view._scope(),
            self._query,
            offset=self._offset,
            limit=want,
            sort=self._sort,
        )
        self._total = total
        self._page = [Hit._from_native(h) for h in hits]
        self._page.reverse()  # pop() from the end
        # Advance by the page asked for: the engine skips hits deleted since
        # the index saw them, so a page may be shorter than `want`.
        self._offset += want

    @property
    def total(self) -> int:
        """How many messages match (regardless of ``limit``)."""
        return self._total

    @property
    def query(self) -> str:
        """The query."""
        return self._query

    def __iter__(self) -> SearchResults:
        return self

    def __next__(self) -> Hit:
        while not self._page:
            done = self._offset >= self._total or (
                self._limit is not None and self._offset >= self._limit
            )
            if done:
                raise StopIteration
            self._fetch()
        return self._page.pop()

    def __repr__(self) -> str:
        return f"<ama.SearchResults {self._query!r} total={self._total}>"

