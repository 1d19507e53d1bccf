"""The server's limits, each an ``attngan-serve`` option (``--max-batch`` for max_batch)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..errors import OptionError

HALF_THE_CPUS = max(1, (os.cpu_count() or 1) // 2)


def _limit(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class Settings:
    max_batch: int = _limit(
        32, "most images of several requests drawn in one generator call (a larger request is drawn alone)"
    )
    max_wait_ms: float = _limit(10.0, "how long the first request of a batch waits for others to join it")
    max_queue: int = _limit(256, "most requests waiting; beyond, 503 with Retry-After")
    timeout_s: float = _limit(60.0, "a request unanswered after this many seconds gets 504 and is cancelled")
    max_captions: int = _limit(8, "most captions a request")
    max_images: int = _limit(8, "most images per caption")
    max_caption_chars: int = _limit(300, "longest caption, in characters")
    store_images: int = _limit(2000, "images kept for /images/ URLs (oldest out)")
    store_mb: float = _limit(256.0, "megabytes of images kept for /images/ URLs (oldest out)")
    max_body_bytes: int = _limit(
        65536, "largest request body, counted as it arrives (413 beyond, whatever the framing)"
    )
    body_timeout_s: float = _limit(30.0, "a request whose body is not all in after this many seconds gets 408")
    health_stall_s: float = _limit(
        120.0, "/v1/health fails (503) while a generator call, or a request waiting with none running, is older"
    )
    render_threads: int = _limit(HALF_THE_CPUS, "threads encoding PNGs (default: half the CPUs)")

    def check(self) -> None:
        """Each limit positive (the wait window may be 0); an OptionError names the option."""
        for name, value in asdict(self).items():
            if value < 0 or (value == 0 and name != "max_wait_ms"):
                raise OptionError(
                    f"--{name.replace('_', '-')} must be {'>= 0' if name == 'max_wait_ms' else '> 0'}, got {value}"
                )
