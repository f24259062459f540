"""The verbs' numeric options, checked where they are parsed: argparse `type=` converters that
refuse a value that makes no sense (zero, negative, NaN or infinity where those are nonsense).
argparse then answers, with exit status 2, `gaitforge VERB: error: argument --FLAG: expected
..., got 'VALUE'` (see `Parser`): the flag, the value, what would do."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are two lines: the error (naming the argument and its
    value), and where the options are listed; not the whole usage block. Subparsers made by
    `add_subparsers` are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the "
                     "options)\n")


def _checked(kind: type, ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


seconds = _checked(float, lambda v: v > 0, "a positive number of seconds")
positive = _checked(float, lambda v: v > 0, "a positive number")
nonnegative = _checked(float, lambda v: v >= 0, "a number, 0 or more")
count = _checked(int, lambda v: v > 0, "a whole number, 1 or more")
count0 = _checked(int, lambda v: v >= 0, "a whole number, 0 or more")
baud = _checked(int, lambda v: v > 0, "a baud rate, a whole number above 0 (e.g. 1000000)")
fraction = _checked(float, lambda v: 0 <= v <= 1, "a fraction between 0 and 1")


def velocity_command(text: str) -> tuple[float, float, float]:
    """`VX,VY,YAW` (m/s, m/s, rad/s): three finite numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected VX,VY,YAW (three finite numbers: m/s, m/s, "
                                         f"rad/s), got {text!r}")
    return values
