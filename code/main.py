"""Train AttnGAN or sample from it: ``python code/main.py --cfg cfg/bird_attn2.yml --gpu 0``
(``cfg/eval_bird.yml`` and the other eval configs, TRAIN.FLAG False, sample)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attngan.cli import main

if __name__ == "__main__":
    sys.exit(main())
