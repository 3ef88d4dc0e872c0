"""An fsspec filesystem over entraflow's Rust Blob client: PyTorch, JAX/Grain, pandas
and anything else that speaks fsspec read the same data with the same identity as
TensorFlow's ``az://`` plugin (same client, read-ahead, retries, run id).

    import pandas as pd
    df = pd.read_csv("entraflow://myaccount/data/train.csv")

    import fsspec
    with fsspec.open("entraflow://myaccount/data/shard-0.bin", "rb") as f:
        header = f.read(1024)

URLs are ``entraflow://<account>/<container>/<path>`` (or ``azent://``). The name
``az://`` belongs to adlfs; to serve it with entraflow instead, say so explicitly::

    fsspec.register_implementation("az", EntraflowFileSystem, clobber=True)

Identity comes from the environment exactly as for the TensorFlow plugin (service
principal variables, workload identity, managed identity, an earlier ``entraflow
login``), or from an ``entraflow.identity`` credential:
``EntraflowFileSystem(credential=ClientSecretCredential(...))``. The endpoint is
``ENTRAFLOW_BLOB_ENDPOINT`` (default ``https://<account>.blob.core.windows.net``) and
every request carries ``ENTRAFLOW_RUN_ID`` (or a per-process id) for the audit log.

Errors: a missing blob raises ``FileNotFoundError``; a refusal raises
``PermissionError`` whose message is the gate's explanation (it names the role that
would grant the action); other failures raise ``OSError``. Writes become visible
only when the file is closed (Put Block List); a ``with`` block that raises discards
them. Forked workers (DataLoader) work: the Rust client is rebuilt per process.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
from typing import Any, Optional

from fsspec import AbstractFileSystem

from entraflow import _native

__all__ = ["EntraflowFileSystem"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class _RawReader(io.RawIOBase):
    """``io`` raw file over the native reader (which reads ahead)."""

    mode = "rb"

    def __init__(self, native: "_native.BlobReader", name: str):
        super().__init__()
        self._native, self.name = native, name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._native.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def readall(self) -> bytes:
        return self._native.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._native.seek(offset, whence)

    def tell(self) -> int:
        return self._native.tell()


class EntraflowReadFile(io.BufferedReader):
    """A blob open for reading. ``size``, ``path`` and ``fs`` as fsspec files have."""

    def __init__(self, fs: "EntraflowFileSystem", path: str, native: "_native.BlobReader", buffer_size: int):
        super().__init__(_RawReader(native, fs.unstrip_protocol(path)), buffer_size=buffer_size)
        self.fs, self.path, self.size = fs, path, native.size

    def __repr__(self) -> str:
        return f"<EntraflowReadFile {self.fs.unstrip_protocol(self.path)}>"


class EntraflowWriteFile(io.BufferedIOBase):
    """A blob open for writing: data is staged as blocks and committed on ``close``
    (Put Block List), so readers never see a partial file. Leaving a ``with`` block by
    an exception discards what was written (the previous blob, if any, stays)."""

    def __init__(self, fs: "EntraflowFileSystem", path: str, native: "_native.BlobWriter", mode: str):
        super().__init__()
        self.fs, self.path, self.mode, self._native = fs, path, mode, native

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.closed:
            raise ValueError("I/O operation on a closed file")
        return self._native.write(b if isinstance(b, bytes) else bytes(b))

    def flush(self) -> None:
        # Visibility comes with close; staging tiny blocks on every flush would only
        # multiply requests (TextIOWrapper and pandas flush often).
        if self.closed:
            raise ValueError("I/O operation on a closed file")

    def tell(self) -> int:
        return self._native.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                self._native.close()
            finally:
                super().close()

    def discard(self) -> None:
        """Closes without committing."""
        if not self.closed:
            self._native.discard()
            super().close()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"<EntraflowWriteFile {self.fs.unstrip_protocol(self.path)}>"


class EntraflowFileSystem(AbstractFileSystem):
    """Azure Blob storage through entraflow's Rust client, with Entra ID identity.

    ``credential``: an ``entraflow.identity`` credential (sync or ``aio``); without it,
    the environment decides (the same chain as ``entraflow.identity.DefaultCredential``).
    The filesystem pickles to its arguments (fsspec's rule), so the credential's
    configuration, never a token, travels to worker processes.
    """

    protocol = ("entraflow", "azent")
    root_marker = ""

    def __init__(self, credential: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        native_credential = None
        if credential is not None:
            # A sync credential, or an async one (entraflow.identity.aio) over its sync twin.
            native_credential = getattr(getattr(credential, "_sync", credential), "_native", None)
            if not isinstance(native_credential, _native.Credential):
                raise TypeError(
                    f"credential must be an entraflow.identity credential (e.g. DefaultCredential, "
                    f"ClientSecretCredential), not {type(credential).__name__}; the filesystem gets its "
                    "tokens in Rust, so an azure-identity object cannot be used here"
                )
        self._native = _native.BlobFileSystem(native_credential)

    # -- paths ---------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = _SCHEME.sub("", str(path))
        return path.strip("/")

    @staticmethod
    def _uri(path: str) -> str:
        return "entraflow://" + path

    def _info_of(self, path: str, size: int, mtime_nsec: int, is_dir: bool) -> dict:
        info = {"name": path, "size": size, "type": "directory" if is_dir else "file"}
        if not is_dir:
            info["mtime"] = mtime_nsec / 1e9
        return info

    # -- metadata ------------------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict:
        path = self._strip_protocol(path)
        return self._info_of(path, *self._native.stat(self._uri(path)))

    def exists(self, path: str, **kwargs: Any) -> bool:
        # fsspec's default answers False for any error; a refusal must stay visible,
        # or a missing role reads as a missing file.
        try:
            self.info(path)
            return True
        except FileNotFoundError:
            return False

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        path = self._strip_protocol(path)
        try:
            entries = self._native.list_dir(self._uri(path))
        except (FileNotFoundError, PermissionError, NotImplementedError):
            raise
        except OSError:
            info = self.info(path)  # a file lists as itself, as on local disk
            if info["type"] != "file":
                raise
            return [info] if detail else [path]
        infos = [self._info_of(f"{path}/{name}", size, mtime, is_dir) for name, size, mtime, is_dir in entries]
        return infos if detail else [i["name"] for i in infos]

    def modified(self, path: str) -> _dt.datetime:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(f"{path} is a directory; only blobs have a modification time")
        return _dt.datetime.fromtimestamp(info["mtime"], tz=_dt.timezone.utc)

    def glob(self, path: str, maxdepth: Optional[int] = None, **kwargs: Any):
        # One List Blobs query with the pattern's literal prefix (the plugin's matcher),
        # instead of walking directory by directory. `**` and detail keep fsspec's rules.
        stripped = self._strip_protocol(path)
        if "**" in stripped or maxdepth is not None or kwargs.get("detail") or not any(c in stripped for c in "*?["):
            return super().glob(path, maxdepth=maxdepth, **kwargs)
        return [self._strip_protocol(p) for p in self._native.glob(self._uri(stripped))]

    # -- reading -------------------------------------------------------------

    def cat_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
            start = None if start is None else max(size + start, 0) if start < 0 else start
            end = None if end is None else max(size + end, 0) if end < 0 else end
        return self._native.cat(self._uri(path), start, end)

    def _open(self, path: str, mode: str = "rb", block_size: Optional[int] = None, autocommit: bool = True,
              cache_options: Optional[dict] = None, **kwargs: Any):
        path = self._strip_protocol(path)
        uri = self._uri(path)
        if mode == "rb":
            return EntraflowReadFile(self, path, self._native.open_read(uri), block_size or 256 * 1024)
        if mode in ("wb", "ab", "xb"):
            if mode == "xb" and self.exists(path):
                raise FileExistsError(f"{self.unstrip_protocol(path)} already exists")
            return EntraflowWriteFile(self, path, self._native.open_write(uri, mode == "ab"), mode)
        raise ValueError(f"unsupported mode {mode!r}: entraflow blobs open as 'rb', 'wb', 'ab' or 'xb'")

    # -- writing -------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if mode == "create" and self.exists(path):
            raise FileExistsError(f"{self.unstrip_protocol(path)} already exists")
        self._native.put(self._uri(path), bytes(value))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self._native.create_dir(self._uri(self._strip_protocol(path)), create_parents)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not exist_ok and self.exists(path):
            raise FileExistsError(f"{self.unstrip_protocol(path)} already exists")
        self._native.create_dir(self._uri(path), True)

    def rmdir(self, path: str) -> None:
        self._native.delete_dir(self._uri(self._strip_protocol(path)))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copies one blob server-side (Copy Blob): the data does not pass through here."""
        self._native.copy_file(self._uri(self._strip_protocol(path1)), self._uri(self._strip_protocol(path2)))

    def mv(self, path1, path2, recursive: bool = False, maxdepth: Optional[int] = None, **kwargs: Any) -> None:
        single = isinstance(path1, str) and isinstance(path2, str) and not any(c in path1 for c in "*?[")
        if not single or maxdepth is not None:
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(src) and not recursive:
            raise IsADirectoryError(f"{self.unstrip_protocol(src)} is a directory; pass recursive=True to move it")
        # Copy Blob + Delete Blob per blob, in Rust (a directory moves as a whole).
        self._native.rename(self._uri(src), self._uri(dst))

    def rm_file(self, path: str) -> None:
        self._native.delete_file(self._uri(self._strip_protocol(path)))

    def _rm(self, path: str) -> None:
        uri = self._uri(self._strip_protocol(path))
        try:
            self._native.delete_file(uri)
        except FileNotFoundError:
            # Not a blob: a virtual directory. It vanished with its last blob (rm
            # deletes children first); forget it if this process made it with mkdir.
            try:
                self._native.delete_dir(uri)
            except FileNotFoundError:
                pass

    def rm(self, path, recursive: bool = False, maxdepth: Optional[int] = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in reversed(paths):  # children before their directories
            self._rm(p)
