"""scDSEC: deep structure-enhanced clustering of single-cell RNA-seq data."""

from __future__ import annotations

from importlib import metadata as _metadata

from ._errors import InputError

try:
    __version__ = _metadata.version("scdsec")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["InputError", "__version__"]
