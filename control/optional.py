"""Optional dependencies, imported when a feature needs them: a missing one is a sentence that
says which extra installs it (`pip install 'gaitforge[EXTRA]'`), not an ImportError."""

from __future__ import annotations

import importlib

from gaitforge.robots.configio import ConfigError

PACKAGES = {"evdev": "evdev", "rich": "rich", "mcap": "mcap", "imageio_ffmpeg": "imageio-ffmpeg"}


class MissingDependency(ConfigError):
    """A feature was asked for whose optional package is not installed."""


def require(module: str, extra: str, feature: str):
    """The module, imported; or MissingDependency naming the package and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = PACKAGES.get(module, module)
        raise MissingDependency(f"{feature} needs the optional package `{package}`, which is "
                                f"not installed ({err}): pip install 'gaitforge[{extra}]' "
                                f"(or pip install {package})") from None
