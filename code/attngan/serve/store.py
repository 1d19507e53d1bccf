"""The images served under ``/images/``: in memory, bounded in count and bytes, oldest out.
Nothing is read from disk, and a name is looked up only if it has the form the store gives
(``<24 hex digits>.png``)."""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict

NAME_BYTES = 12  # random bytes of a name, written as hex
NAME = re.compile(rf"[0-9a-f]{{{2 * NAME_BYTES}}}\.png")


class ImageStore:
    """PNG files by name, at most ``max_images`` of them and ``max_bytes`` in all; adding one
    past either bound drops the oldest until both hold. Safe to use from several threads."""

    def __init__(self, max_images: int, max_bytes: int):
        if max_images < 1 or max_bytes < 1:
            raise ValueError(
                f"the image store needs room for at least one image, got {max_images} images and {max_bytes} bytes"
            )
        self.max_images, self.max_bytes = max_images, max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._evicted = 0
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        """Store ``png``; returns its name (``<random hex>.png``). A file larger than the whole
        store is a ValueError."""
        if len(png) > self.max_bytes:
            raise ValueError(f"an image of {len(png)} bytes does not fit an image store of {self.max_bytes} bytes")
        name = f"{secrets.token_hex(NAME_BYTES)}.png"
        with self._lock:
            self._items[name] = png
            self._bytes += len(png)
            while len(self._items) > self.max_images or self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
                self._evicted += 1
        return name

    def get(self, name: str) -> bytes | None:
        """The PNG named ``name``; None if it is not (or no longer) here or not a store name."""
        if not NAME.fullmatch(name):
            return None
        with self._lock:
            return self._items.get(name)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "images": len(self._items),
                "bytes": self._bytes,
                "evicted": self._evicted,
                "max_images": self.max_images,
                "max_bytes": self.max_bytes,
            }
