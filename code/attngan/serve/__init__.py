"""Serving: ``attngan-serve``, an HTTP API and a web page over a trained generator.

engine (models and captions, as attngan-sample) -> batching (micro-batches off the event
loop) -> render (PNG files) and store (bounded images) -> app (routes) -> cli.
Needs the ``serve`` extra (FastAPI, uvicorn).
"""

import os
import sys

# OpenMP threads that sleep when idle instead of spinning: the generator shares the CPUs with
# the event loop and PNG encoding, and threads spinning for a busy CPU made it up to 30 times
# slower (docs/serving.md). OpenMP reads this when torch loads it, so it is set only where
# attngan.serve comes first, as in attngan-serve (and not for a process that already has torch,
# whose later subprocesses would inherit it); an explicit setting wins.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
