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


def plain(value):
    """``value`` with NumPy/pandas containers and scalars turned into plain JSON/YAML types
    (dicts with string keys, lists, str, int, float, bool, None; anything else as its str)."""
    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | pd.Index | pd.Series | list | tuple):
        return [plain(v) for v in list(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
