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
        end_user: Optional[List[str]],
        query: str,
        *,
        offset: int = 0,
        limit: int = 100,
        sort: Optional[str] = None,
    ) -> Tuple[int, List[_Info]]: ...
    def get(
        self, tenant: str, end_user: Optional[List[str]], id: str, *, raw: bool = True
    ) -> Tuple[_Info, Optional[bytes]]: ...

def message_text(raw: bytes, date: int) -> Tuple[str, str]: ...
