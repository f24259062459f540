"""A trainer checkpoint is a folder that is whole or refused.

    <dir>/<env_steps, 12 digits>/
        agent.npz      networks, optimisers, normalisers, temperature, TF RNG (agent.get_state)
        replay.npz     the replay buffer
        trainer.json   the trainer's counters, NumPy RNG state, config, evaluation history
        SHA256SUMS     the sha256 of each of those three, as `sha256sum` writes it; written last

Writing: everything goes into a hidden staging folder `.tmp-<steps>.staging-XXXX` that carries
gaitforge's staging marker from its creation (control.files.make_staging); each file is
fsync'ed, SHA256SUMS comes last, the marker goes, and one rename commits the folder. A full
disk (or any OSError) removes the staging folder and raises a CheckpointError that names the
path. Stale staging folders left by a crash are removed at the next start.

Checking: SHA256SUMS must list exactly those three files, in that order and byte for byte in
the form written, and each must match: a single edited byte anywhere (the counters in
trainer.json, SHA256SUMS itself) refuses the folder. By hand: `sha256sum -c SHA256SUMS`.
A checkpoint written before SHA256SUMS existed is checked as far as its trainer.json allows.

Choosing: a trainer that selects (a fine-tune, agents/finetune.py) names its best-evaluated
checkpoint in `<dir>/best` as `latest` names the newest; pruning keeps that one, and a run's
policy (export, eval) is its best checkpoint where it names one, else its newest.

Removing (an old checkpoint past keep_checkpoints, a same-step folder being replaced, a stale
staging folder) goes only through control.files.remove_owned: a checkpoint folder is
recognised by its trainer.json and the names above, a staging folder by its marker. Anything
else is refused with a sentence naming the path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from gaitforge.control.files import (
    STAGING_MARKER,
    NotOursError,
    fsync_dir,
    make_staging,
    remove_owned,
    write_atomic,
)

from .checkpoint import CheckpointError, save_arrays

AGENT, REPLAY, TRAINER, SUMS = "agent.npz", "replay.npz", "trainer.json", "SHA256SUMS"
BEST = "best"  # the file naming the best-evaluated checkpoint
HASHED = (AGENT, REPLAY, TRAINER)
FORMAT = "gaitforge.trainer/2"
LEGACY_FORMAT = "gaitforge.trainer/1"  # hashes of the .npz files inside trainer.json
STEP_NAME = re.compile(r"\d{12}")
STAGING_PREFIX = ".tmp-"
_SUMS_LINE = re.compile(r"([0-9a-f]{64})  (\S+)")

T = TypeVar("T")


def step_folders(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Committed checkpoint folders (12-digit names holding trainer.json), oldest first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.iterdir()
                  if STEP_NAME.fullmatch(p.name) and (p / TRAINER).is_file())


def best_folder(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The committed checkpoint `<dir>/best` names, or None (no such file, or it names no
    committed checkpoint: that one is not trusted)."""
    try:
        name = (Path(checkpoint_dir) / BEST).read_text().strip()
    except OSError:
        return None
    folder = Path(checkpoint_dir) / name
    return folder if STEP_NAME.fullmatch(name) and (folder / TRAINER).is_file() else None


def chmod_like_mkdir(folder: Path) -> None:
    """Give a folder from tempfile.mkdtemp (0700) the mode a plain mkdir would (umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def disk_error(path: Path, doing: str, err: OSError) -> CheckpointError:
    """A sentence for an OSError while writing `path`, saying so plainly when the disk is full."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointError(f"{path}: {doing}: the disk is full ({err.strerror}); free "
                               "some space, then resume the run")
    return CheckpointError(f"{path}: {doing}: {err.strerror or err}")


# --- writing ---

def write_checkpoint(checkpoint_dir: Path, env_steps: int, agent: Mapping, replay: Mapping,
                     meta: dict) -> Path:
    """Write and commit `<checkpoint_dir>/<env_steps>`; a same-step folder is replaced only if
    it is a checkpoint gaitforge wrote. Returns the committed folder."""
    final = checkpoint_dir / f"{env_steps:012d}"
    staging = None
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        staging = make_staging(checkpoint_dir, f"{STAGING_PREFIX[1:]}{env_steps:012d}")
        chmod_like_mkdir(staging)
        save_arrays(staging / AGENT, agent)
        save_arrays(staging / REPLAY, replay)
        write_atomic(staging / TRAINER, json.dumps(meta, indent=1))
        write_atomic(staging / SUMS, sums_text({n: sha256_file(staging / n) for n in HASHED}))
        (staging / STAGING_MARKER).unlink()
        fsync_dir(staging)
        if final.exists() or final.is_symlink():
            remove_checkpoint(final)
        os.replace(staging, final)
        staging = None
        fsync_dir(checkpoint_dir)
    except OSError as err:
        raise disk_error(final, "could not save the checkpoint (nothing of it was kept)",
                         err) from err
    finally:
        if staging is not None:
            remove_leftover(staging)
    return final


def sums_text(digests: Mapping[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in digests.items())


def remove_checkpoint(folder: Path) -> None:
    """Remove a checkpoint folder gaitforge wrote, or refuse (NotOursError) naming the path."""
    remove_owned(folder, marker=TRAINER, allowed=(*HASHED, SUMS), what="checkpoint folder")


def remove_leftover(folder: Path) -> str | None:
    """Remove a staging folder (by its marker) or a checkpoint that was not renamed into place
    (by its names); None when removed, else the sentence saying why it was left."""
    try:
        remove_owned(folder, marker=STAGING_MARKER, what="staging folder")
        return None
    except NotOursError:
        pass
    try:
        remove_checkpoint(folder)
        return None
    except NotOursError as err:
        return str(err)


def remove_stale_staging(checkpoint_dir: Path, warn: Callable[[str], None]) -> None:
    """Remove the staging folders an interrupted write left behind (a crash, kill -9)."""
    if not checkpoint_dir.is_dir():
        return
    for folder in sorted(checkpoint_dir.glob(f"{STAGING_PREFIX}*")):
        if folder.is_dir() and not folder.is_symlink():
            why = remove_leftover(folder)
            if why is not None:
                warn(f"left {folder} as it is: {why}")


def prune(checkpoint_dir: Path, keep: int, warn: Callable[[str], None]) -> None:
    """Keep the newest `keep` checkpoints and the one `best` names; an older one that holds
    anything gaitforge did not write there is kept, with a sentence."""
    best = best_folder(checkpoint_dir)
    for old in step_folders(checkpoint_dir)[:-keep]:
        if old == best:
            continue
        try:
            remove_checkpoint(old)
        except NotOursError as err:
            warn(f"kept an old checkpoint: {err}")


# --- checking and reading ---

def verify_checkpoint(folder: Path) -> dict:
    """The folder's trainer.json as a dict, after checking every file against SHA256SUMS
    (CheckpointError saying which file and why otherwise)."""
    folder = Path(folder)
    if (folder / SUMS).exists():
        _check_sums(folder)
    meta = _read_meta(folder)
    if not (folder / SUMS).exists():
        if meta.get("format") == FORMAT:
            raise CheckpointError(f"{folder}: incomplete checkpoint ({SUMS} is missing)")
        for name, digest in dict(meta.get("sha256", {})).items():  # an older checkpoint
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                raise CheckpointError(f"{folder / name}: sha256 does not match trainer.json "
                                      "(corrupt or altered)")
    return meta


def _check_sums(folder: Path) -> None:
    path = folder / SUMS
    try:
        text = path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}); the checkpoint was damaged or "
                              "edited") from err
    entries = [_SUMS_LINE.fullmatch(line) for line in text.split("\n")[:-1]]
    listed = {m[2]: m[1] for m in entries if m}
    if None in entries or tuple(listed) != HASHED or sums_text(listed) != text:
        raise CheckpointError(f"{path}: not the list of {', '.join(HASHED)} with their sha256 "
                              "that gaitforge writes; the checkpoint was damaged or edited")
    for name, digest in listed.items():
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder / name}: missing from the checkpoint")
        if sha256_file(folder / name) != digest:
            raise CheckpointError(f"{folder / name}: its sha256 does not match {SUMS}; the "
                                  "file was damaged or edited")


def _read_meta(folder: Path) -> dict:
    path = folder / TRAINER
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint metadata: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: unreadable checkpoint metadata (not a JSON object)")
    return meta


def newest_usable(checkpoint_dir: str | os.PathLike, load: Callable[[Path], T],
                  warn: Callable[[str], None]) -> tuple[Path, T]:
    """(folder, load(folder)) for the newest checkpoint `load` accepts; each refused one is
    skipped with a sentence. CheckpointError when none is left."""
    checkpoint_dir = Path(checkpoint_dir)
    folders = step_folders(checkpoint_dir)[::-1]
    if not folders:
        raise CheckpointError(f"{checkpoint_dir}: no complete checkpoint")
    for i, folder in enumerate(folders):
        try:
            return folder, load(folder)
        except CheckpointError as err:
            then = (f"trying the previous one, {folders[i + 1].name}" if i + 1 < len(folders)
                    else "no earlier checkpoint is left")
            warn(f"skipping checkpoint {folder.name}: {err}; {then}")
    raise CheckpointError(f"{checkpoint_dir}: no usable checkpoint (every one was refused, "
                          "see above); nothing was changed")


def policy_usable(checkpoint_dir: str | os.PathLike, load: Callable[[Path], T],
                  warn: Callable[[str], None]) -> tuple[Path, T]:
    """(folder, load(folder)) for a run's policy: the checkpoint `best` names where `load`
    accepts it (a refused one is said, and passed over), else `newest_usable`."""
    best = best_folder(checkpoint_dir)
    if best is not None:
        try:
            return best, load(best)
        except CheckpointError as err:
            warn(f"the best checkpoint {best.name} is refused: {err}; taking the newest usable")
    return newest_usable(checkpoint_dir, load, warn)
