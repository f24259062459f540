"""Which errors a user can cause, and the sentence `main` prints for each (exit status 2).

A user error is bad input or a machine that is not ready: a config, bundle, checkpoint or log
that is wrong (the library's own error types, whose messages name the file and field); a file
path that is a folder, missing or unreadable (an OSError that names its path); a serial port
that cannot be opened; a robot that cannot be started (a servo or board that does not answer
or reports a fault at start: `HardwareBody` notes on the error what to check); Ray collectors
that keep failing past their restart budget. Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import errno

PATH_PROBLEMS = {
    errno.EISDIR: "is a folder, where a file is expected",
    errno.ENOTDIR: "a part of this path is a file, where a folder is expected",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "exists, and is not a folder",
    errno.EACCES: "permission denied (check its owner and mode)",
    errno.EPERM: "operation not permitted (check its owner and mode)",
    errno.ENOSPC: "no space left on its device",
    errno.EROFS: "on a read-only file system",
}


def _input_errors() -> tuple[type[BaseException], ...]:
    from gaitforge.agents.checkpoint import CheckpointError
    from gaitforge.agents.ray_trainer import CollectorsSpent
    from gaitforge.control.bundle import BundleError
    from gaitforge.control.files import NotOursError
    from gaitforge.control.logger import LogFormatError, LogSpaceError
    from gaitforge.robots.configio import ConfigError

    return (ConfigError, CheckpointError, BundleError, LogFormatError, LogSpaceError, NotOursError,
            CollectorsSpent)


def _hardware_errors() -> tuple[type[BaseException], ...]:
    """What escapes a verb only when the robot cannot be started: the body catches these in
    its ticks (the safety layer decides), and its start-up raises them."""
    from gaitforge.hw_drivers.board import BoardError, BoardTimeout
    from gaitforge.hw_drivers.body import HardwareReadError
    from gaitforge.hw_drivers.dynamixel_bus import DxlError
    from gaitforge.hw_drivers.transport import TransportError

    return TransportError, DxlError, BoardError, BoardTimeout, HardwareReadError


def user_error_message(err: BaseException) -> str | None:
    """The sentence for `err` if a user can cause it, else None (a bug: let it raise)."""
    if isinstance(err, _input_errors()):
        return str(err)
    if isinstance(err, _hardware_errors()):
        from gaitforge.hw_drivers.body import HardwareReadError

        notes = getattr(err, "__notes__", None)
        if notes:  # HardwareBody's account of a failed start: the device, what to check
            return notes[-1]
        if isinstance(err, HardwareReadError):  # the first read after the start
            return f"no valid state from the robot at start: {err}"
        return str(err)
    if isinstance(err, OSError) and err.filename is not None:
        problem = PATH_PROBLEMS.get(err.errno, err.strerror or str(err))
        return f"{err.filename}: {problem}"
    return None
