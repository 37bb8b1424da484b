"""``python -m trioring``: the command line (``trioring.cli``)."""

from __future__ import annotations

import sys

from trioring.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
