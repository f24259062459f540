"""Reading episode logs for the verbs that learn from them (replay, sysid): one robot, the
logs' hashes for provenance, and a sentence for a torn tail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gaitforge.robots.configio import ConfigError


@dataclass
class LoadedLog:
    path: Path
    log: object  # control.logger.EpisodeLog
    sha256: str
    note: str  # "" or what was left out (a torn tail)


def load_logs(paths: list[str], *, what: str = "log") -> list[LoadedLog]:
    """Read every log; refuse a folder, a missing file, a corrupt log or logs of two robots.
    A torn tail is used up to the last complete tick, and the note says so."""
    from gaitforge.control.bundle import file_sha256
    from gaitforge.control.logger import read_log

    out = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give episode log files (.gflog)")
        if not path.is_file():
            raise ConfigError(f"{path}: no such {what}")
        log = read_log(path)
        note = ""
        if log.torn_tail:
            ticks = log.ticks["tick"]
            last = int(ticks[-1]) if len(ticks) else -1
            note = (f"{path}: torn tail ({log.torn_tail['bytes_skipped']} bytes at byte "
                    f"{log.torn_tail['offset']}): used up to its last complete tick ({last})")
        out.append(LoadedLog(path, log, file_sha256(path), note))
    robots = {entry.log.metadata.get("robot") for entry in out}
    if len(robots) > 1:
        first = out[0].log.metadata.get("robot")
        other = next(e for e in out if e.log.metadata.get("robot") != first)
        raise ConfigError(f"{other.path}: a log of robot '{other.log.metadata.get('robot')}', "
                          f"but {out[0].path} is of '{first}': one robot at a time")
    return out
