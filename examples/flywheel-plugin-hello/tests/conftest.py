"""Make the plugin module importable from a source checkout too (an installed copy also works)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
