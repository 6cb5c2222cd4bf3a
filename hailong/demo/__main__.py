"""`python -m hailong.demo`, the same as `hailong demo`."""
from __future__ import annotations

import sys

from hailong.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
