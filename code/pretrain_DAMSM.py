"""Pretrain DAMSM: ``python code/pretrain_DAMSM.py --cfg cfg/DAMSM/bird.yml --gpu 0``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attngan.cli import pretrain_damsm_main

if __name__ == "__main__":
    sys.exit(pretrain_damsm_main())
