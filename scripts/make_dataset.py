"""Make a dataset of your own captioned images without installing the package.

Usage: python scripts/make_dataset.py --images DIR --captions FILE --out data/NAME  (docs/own_data.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))

from attngan.data.make_dataset import main

if __name__ == "__main__":
    sys.exit(main())
