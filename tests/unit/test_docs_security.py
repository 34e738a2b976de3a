"""docs/security.md holds the ACL table as the code has it: they cannot disagree."""

from __future__ import annotations

from pathlib import Path

from cosmic import acls
from cosmic.settings import Settings


def test_the_security_page_holds_the_acl_table_verbatim():
    page = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    assert acls.markdown(Settings()) in page, (
        "docs/security.md is out of date: paste the output of `cosmic topics acls`")
