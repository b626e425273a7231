"""A stand-in project for the wrapper scripts' runs: manage.py, the scripts, and the lines
a stand-in python prints (STUB key=[value]) read back."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.utils import ROOT

# The wrapper templates: the one copy, shipped in the package (hand-copied, they run as is).
SCRIPTS = ROOT / "tokenops" / "scheduling" / "scripts"
# Printed by every stand-in python; must reach the log byte for byte.
UTF8_LINE = "Привет, ёж — ✓ ümlaut"


def fake_project(root: Path, *scripts: str) -> Path:
    """A project folder with manage.py (empty) and copies of the named scripts."""
    (root / "scripts").mkdir(parents=True)
    (root / "manage.py").write_text("# stand-in\n")
    for name in scripts:
        shutil.copy2(SCRIPTS / name, root / "scripts" / name)
    return root


def stub_lines(log_text: str) -> dict[str, str]:
    """The STUB key=[value] lines the stand-in python printed, as a dict."""
    found = {}
    for match in re.finditer(r"^STUB (\S+?)=\[(.*?)\]\s*$", log_text, re.MULTILINE):
        found[match[1]] = match[2]
    return found
