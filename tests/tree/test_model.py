import pytest

from rdforge.errors import FormatError
from rdforge.tree.model import check_member_name
from rdforge.tree.unpack import new_tree


def test_member_names_that_escape_are_refused() -> None:
    assert check_member_name("./usr/bin/x", "t") == "usr/bin/x"
    with pytest.raises(FormatError, match="escapes"):
        check_member_name("./usr/../../etc/passwd", "t")
    with pytest.raises(FormatError, match="absolute"):
        check_member_name("/etc/passwd", "t")


def test_symlinks_resolve_inside_the_tree() -> None:
    t = new_tree()
    t.add_symlink("usr/lib/evil", "/../../../etc")
    real = t.add_file("usr/lib/evil/passwd", b"x")
    assert real == "etc/passwd"  # stays inside the tree's own root
    t.add_file("bin/tool", b"y")  # merged /usr: bin -> usr/bin
    assert "usr/bin/tool" in t.entries
