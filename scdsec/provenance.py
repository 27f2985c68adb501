"""What made an output: package versions, platform and time, recorded in every result."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata

_PACKAGES = (
    "scdsec",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "pynndescent",
    "torch",
    "h5py",
    "leidenalg",
    "igraph",
)


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(**extra) -> dict:
    """Versions, host platform and a UTC timestamp, plus whatever the caller adds."""
    return {
        "versions": versions(),
        "platform": platform.platform(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
