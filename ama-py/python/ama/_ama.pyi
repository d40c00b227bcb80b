"""Type stubs of the native module ``ama._ama`` (ama-py/src). Use ``ama``, not this."""

import os
from typing import Callable, List, Optional, Tuple, Union, final

__all__ = ["Archive", "message_text", "__version__", "MAX_PAGE", "MAX_OFFSET"]

__version__: str
MAX_PAGE: int
MAX_OFFSET: int

_Path = Union[str, os.PathLike[str]]
_Mailbox = Tuple[Optional[str], str]
_Receipt = Tuple[str, str, bool]
_Tenant = Tuple[str, str, str, List[str], str, int]
# A read acts as the operator (None), a session token, or an end user's addresses.
_Who = Union[None, str, List[str]]
_User = Tuple[str, str, List[str], List[str], bool, str, bool, Optional[int]]
_AuditEntry = Tuple[
    int,
    int,
    Optional[str],
    List[str],
    str,
    Optional[str],
    str,
    str,
    List[str],
    str,
    Optional[str],
    str,
]

# The fields of ama.Hit, in order: id, date, subject, from_, sender, to, cc,
# bcc, reply_to, message_id, header_date, in_reply_to, references,
# attachments, size, anomalies, sha256, deliveries.
_Info = Tuple[
    str,
    int,
    Optional[str],
    List[_Mailbox],
    List[_Mailbox],
    List[_Mailbox],
    List[_Mailbox],
    List[_Mailbox],
    List[_Mailbox],
    Optional[str],
    Optional[int],
    List[str],
    List[str],
    List[Tuple[Optional[str], str, int]],
    int,
    List[str],
    str,
    List[Tuple[Optional[str], List[str], int, str]],
]

@final
class Archive:
    @staticmethod
    def open(
        path: _Path, *, passphrase: Optional[str] = None, key_file: Optional[_Path] = None
    ) -> Archive: ...
    @staticmethod
    def create(
        path: _Path,
        *,
        passphrase: Optional[str] = None,
        key_file: Optional[_Path] = None,
        fast_kdf: bool = False,
    ) -> Archive: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def create_tenant(
        self,
        id: str,
        *,
        name: Optional[str] = None,
        region: Optional[str] = None,
        domains: List[str] = ...,
        retention: Optional[str] = None,
    ) -> _Tenant: ...
    def tenants(self) -> List[_Tenant]: ...
    def tenant(self, id: str) -> _Tenant: ...
    def stats(self, tenant: str) -> Tuple[int, int, int, int]: ...
    def reindex(self, tenant: str) -> int: ...
    def ingest(
        self,
        tenant: str,
        raw: bytes,
        *,
        mail_from: Optional[str] = None,
        rcpt_to: List[str] = ...,
        received_at_us: Optional[int] = None,
    ) -> _Receipt: ...
    def ingest_batch(
        self,
        tenant: str,
        items: List[Tuple[bytes, Optional[str], List[str], Optional[int]]],
    ) -> List[Tuple[Optional[_Receipt], Optional[str]]]: ...
    def import_paths(
        self,
        tenant: str,
        paths: List[_Path],
        *,
        progress: Optional[Callable[[int, int, int, int], object]] = None,
        progress_every: int = 1000,
        batch: int = 500,
        limit: Optional[int] = None,
    ) -> Tuple[int, int, int, int, List[Tuple[str, str]]]: ...
    def search(
        self,
        tenant: str,
        end_user: _Who,
        query: str,
        *,
        offset: int = 0,
        limit: int = 100,
        sort: Optional[str] = None,
    ) -> Tuple[int, List[_Info]]: ...
    def get(
        self, tenant: str, end_user: _Who, id: str, *, raw: bool = True
    ) -> Tuple[_Info, Optional[bytes]]: ...
    def login(
        self, tenant: str, user: str, password: str, *, source: Optional[str] = None
    ) -> Tuple[str, str, List[str], int]: ...
    def logout(self, token: str) -> None: ...
    def add_user(
        self,
        tenant: str,
        id: str,
        *,
        display_name: Optional[str] = None,
        addresses: List[str] = ...,
        roles: List[str] = ...,
        password: Optional[str] = None,
    ) -> _User: ...
    def users(self, tenant: str) -> List[_User]: ...
    def change_user(self, tenant: str, id: str, what: str, value: str) -> _User: ...
    def audit(
        self,
        tenant: str,
        who: _Who,
        *,
        since: Optional[int] = None,
        action: Optional[str] = None,
        limit: int = 1000,
    ) -> List[_AuditEntry]: ...
    def verify_audit(
        self, tenant: str, who: _Who = None
    ) -> Tuple[int, str, List[Tuple[int, str]]]: ...
    def place_hold(
        self, tenant: str, name: str, kind: str, values: List[str], reason: str
    ) -> None: ...
    def release_hold(self, tenant: str, name: str, reason: str) -> None: ...
    def holds(self, tenant: str) -> List[Tuple[str, str, str, int, bool]]: ...
    def set_retention(
        self,
        tenant: str,
        default: str,
        *,
        year_end: bool = False,
        rules: List[Tuple[str, str, str]] = ...,
        minimum: Optional[str] = None,
        locked: bool = False,
        four_eyes: bool = False,
    ) -> int: ...
    def retain_until(self, tenant: str, id: str) -> int: ...
    def request_deletion(
        self,
        tenant: str,
        reason: str,
        *,
        ids: Optional[List[str]] = None,
        query: Optional[str] = None,
    ) -> Tuple[str, Optional[str], List[str], List[Tuple[str, str]]]: ...
    def sweep(self, tenant: str, at: Optional[int] = None) -> Tuple[List[str], List[str], int]: ...
    def verify(
        self, tenant: str
    ) -> Tuple[int, List[Tuple[str, str, int]], List[Tuple[Optional[str], str]]]: ...
    def export(
        self,
        tenant: str,
        who: _Who,
        path: _Path,
        *,
        query: Optional[str] = None,
        ids: Optional[List[str]] = None,
        format: str = ...,
        hold: Optional[str] = None,
    ) -> Tuple[int, int]: ...

def message_text(raw: bytes, date: int) -> Tuple[str, str]: ...
