"""Input: read count matrices in the common single-cell layouts, fetch and verify files."""

from __future__ import annotations

from .download import fetch, file_digest, verify_checksum
from .readers import detect_format, read_counts

__all__ = ["detect_format", "fetch", "file_digest", "read_counts", "verify_checksum"]
