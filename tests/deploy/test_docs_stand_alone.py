"""The project's documents and code never send a reader outside the repository for a fact."""

import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.deploy
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()


def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        if name.startswith("docs/asyncapi/validate/") or name.endswith((".html", ".lock")) or name == THIS:
            continue
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        if "../shared/" in text or "reference/domain-facts" in text:
            offenders.append(name)
    assert offenders == [], f"these files point outside the repository: {offenders}"
