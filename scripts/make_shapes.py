"""Generate the synthetic shapes dataset without installing the package.

Usage: python scripts/make_shapes.py [--out data/shapes] [--num-images N] [--force] ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))

from attngan.data.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
