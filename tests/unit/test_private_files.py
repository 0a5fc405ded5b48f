"""Reports, SAR exports and key exports are created new and owner-only, never through a link."""

import os
import stat

import pytest
from sais_shared.files import OutputFileError, write_private_file

pytestmark = pytest.mark.unit


def test_a_new_file_is_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private_file(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o600


def test_an_existing_world_readable_file_is_refused_not_overwritten(tmp_path):
    existing = tmp_path / "report.json"
    existing.write_text("old")
    existing.chmod(0o644)
    with pytest.raises(OutputFileError, match="already exists"):
        write_private_file(existing, "personal data")
    assert existing.read_text() == "old"


def test_a_symbolic_link_is_never_followed(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / "report.json").symlink_to(target)
    with pytest.raises(OutputFileError):
        write_private_file(tmp_path / "report.json", "personal data")
    assert not target.exists()
