"""``ldct_scripts.bundle_import``, the one way to import a bundle's ``scripts`` package: private names side by
side, the name ``scripts`` itself for code that runs a bundle's configs, and ``sys.path``/``sys.modules`` put back."""

import sys

import pytest

from ldct_scripts import bundle_import as bi


def _bundle(root, value):
    """A minimal bundle: ``scripts/__init__.py`` (``VALUE``) and ``scripts/child.py`` importing it relatively."""
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "__init__.py").write_text(f"VALUE = {value!r}\n")
    (root / "scripts" / "child.py").write_text("from . import VALUE\n\ndef twice():\n    return 2 * VALUE\n")
    return root


@pytest.fixture
def clean_imports():
    """Put ``sys.path`` and every ``scripts*``/``*_scripts*`` module back after the test."""
    path = list(sys.path)
    before = dict(sys.modules)
    yield
    sys.path[:] = path
    for name in [n for n in sys.modules if n not in before]:
        del sys.modules[name]
    sys.modules.update({n: m for n, m in before.items() if n == "scripts" or n.startswith("scripts.")})


def test_private_names_keep_two_bundles_apart(tmp_path, clean_imports):
    a, b = _bundle(tmp_path / "a" / "tiny", 1), _bundle(tmp_path / "b" / "tiny", 2)  # same folder name
    pa, pb = bi.load_bundle_scripts(a), bi.load_bundle_scripts(b)
    assert pa.__name__ == "tiny_scripts" and pb.__name__.startswith("tiny_scripts_") and (pa.VALUE, pb.VALUE) == (1, 2)
    assert bi.load_bundle_scripts(a) is pa  # imported once
    assert bi.load_bundle_module(b, "child").twice() == 4 and bi.load_bundle_module(a, "child").twice() == 2
    assert "scripts" not in sys.modules or sys.modules["scripts"] is not pa
    with pytest.raises(FileNotFoundError, match=r"no_bundle.*is not a bundle with a scripts package"):
        bi.load_bundle_scripts(tmp_path / "no_bundle")


def test_the_name_scripts_is_the_bundles_for_the_block_and_then_restored(tmp_path, clean_imports):
    a, b = _bundle(tmp_path / "a", "a"), _bundle(tmp_path / "b", "b")
    previous = sys.modules.get("scripts")
    path = list(sys.path)
    with bi.bundle_scripts_on_path(a) as pkg:
        import scripts

        assert scripts is pkg and scripts.VALUE == "a" and sys.path[0] == str(a.resolve())
        with bi.bundle_scripts_on_path(b):
            import scripts.child

            assert scripts.child.twice() == "bb"
        assert sys.modules["scripts"] is pkg  # the outer bundle's package is back
    assert sys.modules.get("scripts") is previous and sys.path == path


def test_activate_swaps_bundles_and_can_leave_the_path_alone(tmp_path, clean_imports):
    a, b = _bundle(tmp_path / "a", "a"), _bundle(tmp_path / "b", "b")
    assert bi.activate_bundle_scripts(a).VALUE == "a" and sys.path[0] == str(a.resolve())
    assert bi.activate_bundle_scripts(a) is sys.modules["scripts"]  # kept when it is already that bundle's
    pkg = bi.activate_bundle_scripts(b, keep_on_path=False)
    assert pkg.VALUE == "b" and str(b.resolve()) not in sys.path and "scripts.child" not in sys.modules


def test_folder_on_path_is_taken_off_again(tmp_path, clean_imports):
    (tmp_path / "lib_for_test_xyz.py").write_text("X = 3\n")
    with bi.folder_on_path(tmp_path):
        import lib_for_test_xyz

        assert lib_for_test_xyz.X == 3
    assert str(tmp_path.resolve()) not in sys.path
