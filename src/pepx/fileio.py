"""Files in and out, safely: atomic writes, what is wrong with a path, folder walks that never hang.

- `atomic_path(path)`: every file pepx writes goes through it - a temporary file beside `path`, renamed onto
  it when the writing succeeded, so a traceback, a kill or a full disk leaves the previous version whole (a
  symbolic link at `path` is replaced, never written through). A write that fails because of the disk or
  its permissions becomes an `OutputError` naming the file.
- `file_problem(path)`: why `path` cannot be read as a regular file (FIFO, device, folder, broken link, link
  loop, missing, permission), without opening it: opening a FIFO blocks, reading /dev/zero never ends.
- `check_output_file(path, option)`: refuse an output path that is a folder or a special file.
- `walk_files(root)`: every entry below `root` that is not a folder - regular files, FIFOs, devices, broken
  links, links to folders (not followed: a link to `..` would otherwise repeat the tree) - in sorted order.
- `write_text`, `write_bytes`, `write_csv`: one-call atomic writes.
- `display_path(path)`: a path as text that prints and encodes everywhere (bytes that are not UTF-8 shown as
  `\\xNN`).

Hand-written: the standard library has the pieces (`os.replace`, `os.stat`, `os.walk`) but not these rules.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pepx.errors import OutputError

#: Messages of non-OSError exceptions that libraries raise for a failed write (torch.save, safetensors).
_WRITE_FAILURES = ("No space left", "Disk quota", "Read-only file system", "Permission denied",
                   "PytorchStreamWriter failed", "file write failed", "StorageFull", "Input/output error")
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def display_path(path: str | os.PathLike) -> str:
    """`path` as printable text: file-name bytes that are not valid UTF-8 become `\\xNN` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | os.PathLike) -> str | None:
    """None when `path` is a readable regular file (or a link to one), else the reason in a few words."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken symbolic link (target missing)" if os.path.islink(path) else "file not found"
        return err.strerror or str(err)
    if stat.S_ISDIR(st.st_mode) and os.path.islink(path):
        return "symbolic link to a folder (not followed inside a folder)"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_kind(st.st_mode)})"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as a Path when a file may be written there: it is absent, a regular file or a symbolic link
    (replaced, not written through); else `OutputError` naming `option`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {display_path(path)}: is a folder; name a file in it")
    if not path.is_symlink() and path.exists() and not path.is_file():
        raise OutputError(f"{option} {display_path(path)}: is not a regular file "
                          f"({_kind(os.stat(path).st_mode)}); name a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{option} {display_path(path)}: {display_path(parent)} is not a folder")
            break
    return path


def write_failure(err: BaseException) -> str | None:
    """The reason when `err` means a file could not be written (full disk, permissions...), else None."""
    if isinstance(err, OSError):
        return err.strerror or str(err) or type(err).__name__
    text = str(err)
    if any(marker in text for marker in _WRITE_FAILURES):
        return text.strip().splitlines()[0][:200]
    return None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that go by it work), renamed onto `path`
    after an fsync when the block succeeds.

    A process killed or failing inside the block leaves `path` as it was, and the temporary file is removed.
    A failure to write (`write_failure`) becomes `OutputError` naming `path`; any other exception passes.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except Exception as err:
            reason = write_failure(err)
            if reason is None or isinstance(err, OutputError):
                raise
            raise OutputError(f"{display_path(path)}: cannot write it ({reason}); any earlier version is "
                              "kept whole") from err
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_csv(frame, path: str | os.PathLike, **kwargs) -> Path:
    """`frame.to_csv(path, **kwargs)` (a pandas DataFrame), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def walk_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every entry below the folder `root` that is not a folder, sorted; links to folders are yielded (not
    followed), so the walk ends even with a link to `..`. Nothing is opened."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        found += [here / name for name in files]
        found += [here / name for name in dirs if (here / name).is_symlink()]
    yield from sorted(found)


__all__ = ["OutputError", "atomic_path", "check_output_file", "display_path", "file_problem", "walk_files",
           "write_bytes", "write_csv", "write_failure", "write_text"]
