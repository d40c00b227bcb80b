"""Result and input types: frozen dataclasses with timezone-aware datetimes.

They are plain values: they keep working after the archive is closed, compare
by value, and can be pickled or turned into dicts with
:func:`dataclasses.asdict`.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from typing import Optional, Sequence, Tuple, Type, TypeVar

from . import _ama

__all__ = [
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
    "User",
    "AuditEntry",
    "AuditReport",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _datetime(seconds: int) -> datetime:
    """Unix seconds → an aware UTC datetime (clamped to what datetime can hold)."""
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        try:
            return _EPOCH + timedelta(seconds=seconds)
        except OverflowError:
            edge = datetime.max if seconds > 0 else datetime.min
            return edge.replace(tzinfo=timezone.utc)


def _micros(when: datetime) -> int:
    """An aware datetime → microseconds since the Unix epoch."""
    if when.tzinfo is None or when.utcoffset() is None:
        from ._errors import InvalidArgument

        raise InvalidArgument(
            "received_at must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))"
        )
    return (when - _EPOCH) // timedelta(microseconds=1)


def _short(text: Optional[str], width: int = 60) -> Optional[str]:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


@dataclass(frozen=True)
class Mailbox:
    """A mailbox from an address header: display name and address."""

    name: Optional[str]
    address: str

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Attachment:
    """An attachment's description (its content: ``Message.as_email()``)."""

    name: Optional[str]
    mime_type: str
    size: int


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message: its envelope. Duplicates add deliveries."""

    mail_from: Optional[str]
    rcpt_to: Tuple[str, ...]
    received_at: datetime
    source: str


@dataclass(frozen=True)
class Receipt:
    """What ingest returns once a message is durable.

    ``duplicate`` is true when the same bytes were already archived in the
    tenant (``id`` is then the stored copy's id; the envelope was merged).
    """

    id: str
    sha256: str
    duplicate: bool

    @classmethod
    def _from_native(cls, t: Tuple[str, str, bool]) -> Receipt:
        return cls(t[0], t[1], t[2])


@dataclass(frozen=True, repr=False)
class Hit:
    """A message's metadata, as a search returns it (no content).

    ``date`` is the ``Date`` header, or the reception time when that is
    missing or invalid (``header_date`` is then ``None``). ``from_`` is the
    ``From`` header (``from`` is a Python keyword). ``anomalies`` names what
    was odd about the message (``missing_from``, ``bad_date``, …).
    """

    id: str
    date: datetime
    subject: Optional[str]
    from_: Tuple[Mailbox, ...]
    sender: Tuple[Mailbox, ...]
    to: Tuple[Mailbox, ...]
    cc: Tuple[Mailbox, ...]
    bcc: Tuple[Mailbox, ...]
    reply_to: Tuple[Mailbox, ...]
    message_id: Optional[str]
    header_date: Optional[datetime]
    in_reply_to: Tuple[str, ...]
    references: Tuple[str, ...]
    attachments: Tuple[Attachment, ...]
    size: int
    anomalies: Tuple[str, ...]
    sha256: str
    deliveries: Tuple[Delivery, ...]

    @classmethod
    def _from_native(cls, t: _ama._Info) -> Hit:
        return _build(cls, t)

    @property
    def envelope_recipients(self) -> Tuple[str, ...]:
        """Every envelope recipient (RCPT TO) over all deliveries, once each."""
        seen: dict[str, str] = {}
        for d in self.deliveries:
            for r in d.rcpt_to:
                seen.setdefault(r.lower(), r)
        return tuple(seen.values())

    def _repr_fields(self) -> str:
        sender = ", ".join(str(m) for m in self.from_) or None
        return (
            f"id={self.id!r}, date={self.date.isoformat()!r}, from_={_short(sender)!r}, "
            f"subject={_short(self.subject)!r}, size={self.size}"
        )

    def __repr__(self) -> str:
        return f"Hit({self._repr_fields()})"


@dataclass(frozen=True, repr=False)
class Message(Hit):
    """A whole message: its metadata, the exact bytes that were archived
    (``raw``), its text, and ``as_email()`` for the standard library's view.
    """

    raw: bytes

    @classmethod
    def _from_native_raw(cls, t: _ama._Info, raw: bytes) -> Message:
        message = _build(cls, t)
        message.__dict__["raw"] = raw
        return message

    @cached_property
    def _text(self) -> Tuple[str, str]:
        return _ama.message_text(self.raw, int(self.date.timestamp()))

    @property
    def text(self) -> str:
        """The body as text: the text/plain parts, or text/html converted to text."""
        return self._text[0]

    @property
    def attachment_text(self) -> str:
        """The text of text-like attachments and attached messages."""
        return self._text[1]

    def as_email(self) -> EmailMessage:
        """The raw bytes parsed by :mod:`email` with the modern default policy."""
        return BytesParser(_class=EmailMessage, policy=email.policy.default).parsebytes(
            self.raw
        )

    def __repr__(self) -> str:
        return f"Message({self._repr_fields()})"


# Building results: a page of hits is converted while holding the GIL, so
# this bypasses the dataclasses' generated __init__ (one frozen-setattr per
# field) and fills the instance dict directly: same objects, ~3x faster.
_new = object.__new__
_HIT_FIELDS = tuple(f.name for f in fields(Hit))
_T = TypeVar("_T", bound=Hit)


def _mailbox(name: Optional[str], address: str) -> Mailbox:
    m = _new(Mailbox)
    m.__dict__.update(name=name, address=address)
    return m


def _mailboxes(v: Sequence[Tuple[Optional[str], str]]) -> Tuple[Mailbox, ...]:
    return tuple([_mailbox(n, a) for n, a in v]) if v else ()


def _delivery(f: Optional[str], r: Sequence[str], at: int, src: str) -> Delivery:
    d = _new(Delivery)
    d.__dict__.update(mail_from=f, rcpt_to=tuple(r), received_at=_datetime(at), source=src)
    return d


def _build(cls: Type[_T], t: _ama._Info) -> _T:
    (id, date, subject, from_, sender, to, cc, bcc, reply_to, message_id, header_date,
     in_reply_to, references, attachments, size, anomalies, sha256, deliveries) = t
    hit = _new(cls)
    hit.__dict__.update(
        zip(
            _HIT_FIELDS,
            (
                id,
                _datetime(date),
                subject,
                _mailboxes(from_),
                _mailboxes(sender),
                _mailboxes(to),
                _mailboxes(cc),
                _mailboxes(bcc),
                _mailboxes(reply_to),
                message_id,
                None if header_date is None else _datetime(header_date),
                tuple(in_reply_to),
                tuple(references),
                tuple([Attachment(n, m, s) for n, m, s in attachments]) if attachments else (),
                size,
                tuple(anomalies),
                sha256,
                tuple([_delivery(*d) for d in deliveries]),
            ),
        )
    )
    return hit


@dataclass(frozen=True)
class Mail:
    """A message to ingest with its envelope (for ``Tenant.ingest_many``).

    ``received_at`` must be timezone-aware; ``None`` means now.
    """

    raw: bytes = field(repr=False)
    mail_from: Optional[str] = None
    rcpt_to: Tuple[str, ...] = ()
    received_at: Optional[datetime] = None


@dataclass(frozen=True)
class TenantInfo:
    """A tenant's settings."""

    id: str
    name: str
    region: str
    domains: Tuple[str, ...]
    retention: str
    created_at: datetime

    @classmethod
    def _from_native(cls, t: Tuple[str, str, str, Sequence[str], str, int]) -> TenantInfo:
        return cls(t[0], t[1], t[2], tuple(t[3]), t[4], _datetime(t[5]))


@dataclass(frozen=True)
class TenantStats:
    """Counters of a tenant."""

    messages: int
    raw_bytes: int
    stored_bytes: int
    duplicates: int


@dataclass(frozen=True)
class ImportProgress:
    """Running totals handed to an import's progress callback."""

    imported: int
    duplicates: int
    refused: int
    bytes: int

    @property
    def messages(self) -> int:
        """Messages handled so far (imported, duplicate or refused)."""
        return self.imported + self.duplicates + self.refused


@dataclass(frozen=True)
class Refusal:
    """A message an import did not archive, and why."""

    origin: str
    reason: str


@dataclass(frozen=True)
class ImportSummary:
    """Totals of an import. ``refusals`` lists every refused message."""

    imported: int
    duplicates: int
    refused: int
    bytes: int
    refusals: Tuple[Refusal, ...]


@dataclass(frozen=True)
class User:
    """A user of a tenant (no password material)."""

    id: str
    display_name: str
    addresses: Tuple[str, ...]
    roles: Tuple[str, ...]
    active: bool
    source: str
    has_password: bool
    last_login: Optional[datetime]

    @classmethod
    def _from_native(cls, t: _ama._User) -> User:
        return cls(
            t[0],
            t[1],
            tuple(t[2]),
            tuple(t[3]),
            t[4],
            t[5],
            t[6],
            None if t[7] is None else _datetime(t[7]),
        )


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a tenant's audit log: who did what, when, to which
    messages, and how it ended."""

    seq: int
    at: datetime
    user: Optional[str]
    roles: Tuple[str, ...]
    frontend: str
    source: Optional[str]
    action: str
    detail: str
    messages: Tuple[str, ...]
    outcome: str
    reason: Optional[str]
    prev_hash: str = field(repr=False)

    @classmethod
    def _from_native(cls, t: _ama._AuditEntry) -> AuditEntry:
        at = _EPOCH + timedelta(milliseconds=t[1])
        return cls(
            t[0], at, t[2], tuple(t[3]), t[4], t[5], t[6], t[7], tuple(t[8]), t[9], t[10], t[11]
        )


@dataclass(frozen=True)
class DeletionResult:
    """What a deletion request did: ``status`` is ``"done"`` (``deleted``
    ids, and ``kept`` as ``(id, why)`` for held or still retained ones) or
    ``"pending"`` (four-eyes: ``request`` awaits a second auditor)."""

    status: str
    request: Optional[str]
    deleted: Tuple[str, ...]
    kept: Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class AuditReport:
    """What verifying a tenant's audit chain found. ``problems`` lists
    ``(entry number, what is wrong)``, first first; empty when intact."""

    entries: int
    head_hash: str
    problems: Tuple[Tuple[int, str], ...]

    @property
    def intact(self) -> bool:
        """Whether the chain is unbroken."""
        return not self.problems
