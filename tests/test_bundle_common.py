"""``bundles/common/``: the one source of the modules both bundles carry, and its sync command.

``python bundles/common/sync.py --check`` exits 0 when every bundle's copy is its source plus the
generated-from header line, and exits 1 naming each copy that differs, is missing or has lost its source.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = REPO / "bundles" / "common"
BUNDLES = ("unet_ldct", "cpce_rfm_da")


def _sync(common: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(common / "sync.py"), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def tree(tmp_path):
    """A copy of ``bundles/`` (common and each bundle's configs and scripts), to break."""
    root = tmp_path / "bundles"
    shutil.copytree(COMMON, root / "common", ignore=shutil.ignore_patterns("__pycache__"))
    for b in BUNDLES:
        for part in ("configs", "scripts"):
            shutil.copytree(REPO / "bundles" / b / part, root / b / part, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_every_bundle_copy_matches_its_source():
    r = _sync(COMMON, "--check")
    assert r.returncode == 0, r.stderr
    sources = sorted(p.name for p in COMMON.glob("*.py") if p.name != "sync.py")
    assert {"dicom_series.py", "input_checks.py", "interrupt.py", "helpers.py"} <= set(sources)
    for b in BUNDLES:
        for name in sources:
            copy = (REPO / "bundles" / b / "scripts" / name).read_text(encoding="utf-8")
            header, body = copy.split("\n", 1)
            assert header == f"# Generated from bundles/common/{name} by `python bundles/common/sync.py`: edit it there, not here."
            assert body == (COMMON / name).read_text(encoding="utf-8")


def test_check_names_a_changed_a_missing_and_an_orphaned_copy_and_sync_repairs_them(tree):
    edited = tree / "cpce_rfm_da" / "scripts" / "interrupt.py"
    edited.write_text(edited.read_text() + "# a local fix\n")
    (tree / "unet_ldct" / "scripts" / "helpers.py").unlink()
    orphan = tree / "unet_ldct" / "scripts" / "old.py"
    orphan.write_text("# Generated from bundles/common/old.py by `python bundles/common/sync.py`: edit it there, not here.\n")
    r = _sync(tree / "common", "--check")
    assert r.returncode == 1
    assert f"{edited}: differs; its source is {tree / 'common' / 'interrupt.py'}" in r.stderr
    assert f"{tree / 'unet_ldct' / 'scripts' / 'helpers.py'}: is missing" in r.stderr
    assert f"{orphan}: has no source any more" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 3  # nothing else is named

    r = _sync(tree / "common")  # writes the two copies; leaves the orphan (not its to delete) and says so
    assert r.returncode == 1 and "old.py, which is gone; delete it by hand" in r.stderr and orphan.exists()
    assert edited.read_bytes().endswith((tree / "common" / "interrupt.py").read_bytes())
    orphan.unlink()
    assert _sync(tree / "common", "--check").returncode == 0
