"""The command-line error contract, below every layer so that any command can follow it:
a user's mistake is one line on stderr and exit status 2; a programming error keeps its
traceback."""
from __future__ import annotations

import logging
import sys

# The errors a user can cause (ConfigError and CheckpointError are ValueErrors; a CUDA id
# without CUDA is a RuntimeError): reported in one line, exit status 2.
USER_ERRORS = (FileNotFoundError, ValueError, RuntimeError)


def report(err: Exception) -> int:
    """Print a user error as one line on stderr (traceback at debug level); returns 2."""
    logging.getLogger("attngan").debug("failed", exc_info=True)
    print(f"error ({type(err).__name__}): {err}", file=sys.stderr)
    return 2
