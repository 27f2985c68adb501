"""Input: read count matrices in the common single-cell layouts, fetch and verify files."""

from __future__ import annotations

from .download import content_digest, fetch, file_digest, local_source, verify_checksum

__all__ = [
    "content_digest",
    "detect_format",
    "fetch",
    "file_digest",
    "local_source",
    "read_counts",
    "verify_checksum",
]


def __getattr__(name: str):
    """The readers on first use: the workflow's rule files import the download helpers
    without paying for anndata and h5py."""
    if name in ("detect_format", "read_counts", "FORMATS"):
        from . import readers

        return getattr(readers, name)
    raise AttributeError(f"module 'scdsec.io' has no attribute {name!r}")
