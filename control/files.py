"""Files gaitforge writes, and the one rule for removing any: only what gaitforge made.

    write_atomic(path, data)        temp file beside it, fsync, rename, fsync the folder
    fsync_dir(folder)               make a rename in `folder` durable
    remove_owned(path, owned=...)   remove a folder gaitforge made, or refuse with a sentence

`remove_owned` is how every overwrite and cleanup removes a folder (a replaced bundle, an old
checkpoint, a staging folder left by a crash). It first checks the folder is recognisably
gaitforge's: it holds the marker file its kind always has (a bundle's `bundle.json`, a
checkpoint's `trainer.json`, a staging folder's `.gaitforge-staging`), and every entry in it is
one gaitforge writes there. Anything else (a training run passed as `--out`, a user's own file
in the folder) is refused with `NotOursError`, naming the path and what is not ours.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

STAGING_MARKER = ".gaitforge-staging"


class NotOursError(ValueError):
    """A folder to overwrite or clean up was not made by gaitforge; nothing was removed."""


def fsync_dir(folder: str | os.PathLike) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`, fsync the
    folder: `path` is the old content or the new one, never a mix (and on failure, such as a
    full disk, the temp file is removed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, say: leave no temp file behind
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def make_staging(parent: str | os.PathLike, prefix: str) -> Path:
    """A new hidden folder in `parent` marked as gaitforge's staging area."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f".{prefix}.staging-", dir=parent))
    (folder / STAGING_MARKER).touch()
    return folder


def remove_owned(path: str | os.PathLike, *, marker: str,
                 allowed: Iterable[str] | Callable[[str], bool] | None = None,
                 what: str = "folder") -> None:
    """Remove folder `path` if gaitforge made it: it holds `marker`, and every top-level entry
    is the marker, the staging marker, or `allowed` (names, or a predicate on the name; None:
    anything). Otherwise NotOursError naming the path, and nothing is removed."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise NotOursError(f"{path} is not a {what} gaitforge made (not a folder): "
                           "refusing to remove it")
    names = sorted(p.name for p in path.iterdir())
    if marker not in names:
        raise NotOursError(f"{path} is not a {what} gaitforge made (no {marker} in it): "
                           "refusing to remove it; choose another path or remove it yourself")
    if allowed is not None:
        ok = allowed if callable(allowed) else set(allowed).__contains__
        foreign = [n for n in names if n not in (marker, STAGING_MARKER) and not ok(n)]
        if foreign:
            raise NotOursError(f"{path} holds '{foreign[0]}', which gaitforge did not write "
                               f"there: refusing to remove the {what}; move that file out or "
                               "choose another path")
    shutil.rmtree(path)


def remove_staging(path: str | os.PathLike) -> None:
    """Remove a staging folder gaitforge made (see make_staging); quiet if it is gone."""
    if Path(path).exists():
        remove_owned(path, marker=STAGING_MARKER, what="staging folder")
