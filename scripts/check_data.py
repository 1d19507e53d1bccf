"""Check a dataset for missing or unreadable files without installing the package.

Usage: python scripts/check_data.py --data_dir data/shapes  (or --cfg cfg/DAMSM/bird.yml)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))

from attngan.data.check import main

if __name__ == "__main__":
    sys.exit(main())
