"""The one exception of the image data code (shared by catalogue, readers and download)."""

from __future__ import annotations

from pertlearn.errors import DataError

__all__ = ["DataError"]
