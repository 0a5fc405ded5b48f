"""The checked-in AsyncAPI documents are what the code generates, and the official parser accepts them."""

import shutil
import subprocess

import pytest

from sais.asyncapi import DOCS
from tests.helpers import after_background_build

pytestmark = pytest.mark.deploy


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs Node.js")
def test_the_official_asyncapi_parser_accepts_the_documents():
    folder = DOCS / "validate"
    after_background_build("npm")
    if not (folder / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=folder, check=True, timeout=300)
    r = subprocess.run(["node", "validate.mjs"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("valid AsyncAPI 3.0.0") == 4
