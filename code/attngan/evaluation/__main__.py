"""``python -m attngan.evaluation`` (what ``torchrun ... -m attngan.evaluation`` runs): attngan-eval."""

import sys

from ..cli import eval_main

sys.exit(eval_main())
