"""scDSEC: deep structure-enhanced clustering of single-cell RNA-seq data."""

from __future__ import annotations

from importlib import metadata as _metadata

from ._errors import InputError

try:
    __version__ = _metadata.version("scdsec")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_SUBMODULES = (
    "io",
    "pp",
    "tl",
    "model",
    "metrics",
    "clustering",
    "markers",
    "plotting",
    "simulate",
    "settings",
)

__all__ = ["InputError", "__version__", *_SUBMODULES]


def __getattr__(name: str):
    """Import submodules on first use: ``scdsec.pp`` works without importing torch."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'scdsec' has no attribute {name!r}")
