"""The one exception of the image data code (shared by catalogue, readers and download)."""

from __future__ import annotations


class DataError(ValueError):
    """A data set is missing, corrupt or refused; the message is one line naming the file."""
