"""The entries on disk: one file per (settings fingerprint, document tokens).

An entry is ``MAGIC``, the length of a JSON header, the header (the
fingerprint, the tokens' and the state's SHA-256, their sizes, and what
``pylampe cache list`` shows), the tokens as little-endian int32, then the
state bytes llama.cpp wrote. It is written to a temporary file in the same
directory and renamed over its name, so a reader sees a whole entry or none,
and two writers of one entry leave one whole entry. A file that does not
check out (cut short, changed, another entry's, not an entry at all) is
ignored with one warning and removed, and the document is read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

MAGIC = b"PYLAMPE-KV\x00\x01"
_LENGTH = struct.Struct("<I")
SUFFIX = ".kv"
_TMP_SUFFIX = ".tmp"
# a temporary file this old was left by a writer that died
_STALE_TMP_S = 3600.0
DEFAULT_MAX_BYTES = 8 << 30

_LOG = logging.getLogger("pylampe")


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/pylampe/documents`` (``~/.cache/pylampe/documents``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pylampe" / "documents"


def tokens_digest(tokens: Sequence[int]) -> str:
    return hashlib.sha256(_token_bytes(tokens)).hexdigest()


def _token_bytes(tokens: Sequence[int]) -> bytes:
    a = array("i", tokens)
    if a.itemsize != 4:
        raise RuntimeError("int32 tokens need a 4-byte C int")
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


@dataclass(frozen=True)
class Entry:
    """One entry's header, as ``pylampe cache list`` shows it."""

    path: Path
    size: int
    last_used: float
    n_tokens: int
    name: str
    info: Dict[str, Any]


class _Bad(Exception):
    """Why an entry is not used (one line)."""


class DocStore:
    """The entries in ``root``, at most ``max_bytes`` in all (least recently used go first).

    ``warn`` receives the one-line reason an entry is ignored or not written.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 warn: Callable[[str], None] = _LOG.warning):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.warn = warn

    def path(self, fingerprint: str, tokens: Sequence[int]) -> Path:
        return self.root / f"{fingerprint[:16]}-{tokens_digest(tokens)[:32]}{SUFFIX}"

    # -- reading ----------------------------------------------------------------------

    def get(self, fingerprint: str, tokens: Sequence[int]) -> Optional[bytearray]:
        """The state saved for these settings and tokens, checked; None when there is none or
        it does not check out (then it is removed, with a warning)."""
        path = self.path(fingerprint, tokens)
        try:
            with open(path, "rb") as f:
                try:
                    state = self._read(f, path, fingerprint, tokens)
                except _Bad as e:
                    self.warn(f"ignoring the document cache entry {path}: {e}; reading the document again")
                    self._remove_if_same(path, os.fstat(f.fileno()).st_ino)
                    return None
        except FileNotFoundError:
            return None
        except OSError as e:
            self.warn(f"cannot read the document cache entry {path}: {e.strerror or e}; reading the document again")
            return None
        os.utime(path)  # last used: what eviction goes by
        return state

    @staticmethod
    def _remove_if_same(path: Path, inode: int) -> None:
        """Remove the bad file unless another process has just renamed a new entry over it."""
        try:
            if path.stat().st_ino == inode:
                path.unlink()
        except OSError:
            pass

    def _read(self, f: Any, path: Path, fingerprint: str, tokens: Sequence[int]) -> bytearray:
        header = self._header(f)
        if header.get("fingerprint") != fingerprint or header.get("tokens_sha256") != tokens_digest(tokens):
            raise _Bad("it belongs to other settings or another document")
        n_state = int(header["state_bytes"])
        expected = f.tell() + 4 * len(tokens) + n_state
        if os.fstat(f.fileno()).st_size != expected:
            raise _Bad(f"truncated or padded ({os.fstat(f.fileno()).st_size} bytes, {expected} expected)")
        if f.read(4 * len(tokens)) != _token_bytes(tokens):
            raise _Bad("its tokens differ")
        state = bytearray(n_state)
        if f.readinto(state) != n_state:
            raise _Bad("truncated")
        if hashlib.sha256(state).hexdigest() != header.get("state_sha256"):
            raise _Bad("checksum mismatch")
        return state

    @staticmethod
    def _header(f: Any) -> Dict[str, Any]:
        if f.read(len(MAGIC)) != MAGIC:
            raise _Bad("not a pylampe document cache entry (or another version)")
        raw = f.read(_LENGTH.size)
        if len(raw) != _LENGTH.size:
            raise _Bad("truncated")
        try:
            header = json.loads(f.read(_LENGTH.unpack(raw)[0]).decode("utf-8"))
            int(header["state_bytes"]), int(header["n_tokens"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise _Bad("corrupt header") from None
        return header

    # -- writing ----------------------------------------------------------------------

    def put(self, fingerprint: str, tokens: Sequence[int], state: Any, info: Dict[str, Any]) -> Optional[Path]:
        """Save ``state`` (a buffer) for these settings and tokens; ``info`` goes into the header
        for ``pylampe cache list``. Returns the entry's path, None when it was not written."""
        view = memoryview(state).cast("B")
        token_bytes = _token_bytes(tokens)
        header = json.dumps({
            "fingerprint": fingerprint, "n_tokens": len(tokens), "tokens_sha256": tokens_digest(tokens),
            "state_bytes": view.nbytes, "state_sha256": hashlib.sha256(view).hexdigest(),
            "created": time.time(), **info,
        }).encode("utf-8")
        size = len(MAGIC) + _LENGTH.size + len(header) + len(token_bytes) + view.nbytes
        if size > self.max_bytes:
            self.warn(f"the document's KV state ({size / (1 << 20):.0f} MiB) is larger than the document "
                      f"cache's size limit ({self.max_bytes / (1 << 20):.0f} MiB): not cached")
            return None
        path = self.path(fingerprint, tokens)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(MAGIC + _LENGTH.pack(len(header)) + header + token_bytes)
                f.write(view)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self.warn(f"cannot write the document cache entry {path}: {e.strerror or e}")
            return None
        self.evict(keep=path)
        return path

    # -- the whole store --------------------------------------------------------------

    def entries(self) -> List[Entry]:
        """Every readable entry's header, the most recently used first (damaged ones are left to
        ``get``, which removes them when their document comes back)."""
        found = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                with open(path, "rb") as f:
                    header = self._header(f)
                st = path.stat()
            except (OSError, _Bad):
                continue
            found.append(Entry(path, st.st_size, st.st_mtime, int(header["n_tokens"]),
                               str(header.get("name", "")), header))
        return sorted(found, key=lambda e: e.last_used, reverse=True)

    def evict(self, keep: Optional[Path] = None) -> List[Path]:
        """Remove least recently used entries until the store fits ``max_bytes`` (never ``keep``),
        and temporary files of writers that died; returns the entries removed."""
        now = time.time()
        for tmp in self.root.glob(f".*{_TMP_SUFFIX}"):
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
            except OSError:
                pass
        files: List[Tuple[float, int, Path]] = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = []
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        return removed

    def clear(self) -> Tuple[int, int]:
        """Remove every entry and temporary file; returns (entries, bytes) removed."""
        count = freed = 0
        for path in [*self.root.glob(f"*{SUFFIX}"), *self.root.glob(f".*{_TMP_SUFFIX}")]:
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            count += path.suffix == SUFFIX
            freed += size
        return count, freed
