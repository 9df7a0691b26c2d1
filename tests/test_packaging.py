"""``pyproject.toml`` installs ``ldct_sim`` and the orchestration code (``scripts/``) as ``ldct_scripts``: every
package folder is listed (so a non-editable wheel holds it), and no name clashes with the bundles' ``scripts``."""

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_folders(top: Path, name: str) -> set[str]:
    """Dotted names of ``top`` and of every folder under it that is a package all the way up (``__init__.py``)."""
    found = set()
    for init in sorted(top.rglob("__init__.py")):
        rel = init.parent.relative_to(top)
        if "__pycache__" in rel.parts:
            continue
        chain = [top / Path(*rel.parts[:i]) for i in range(len(rel.parts) + 1)]
        if all((folder / "__init__.py").is_file() for folder in chain):
            found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_folder_is_listed_under_its_import_name():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"ldct_sim": "ldct_sim", "ldct_scripts": "scripts"}
    expected = _package_folders(ROOT / "ldct_sim", "ldct_sim") | _package_folders(ROOT / "scripts", "ldct_scripts")
    assert set(tool["packages"]) == expected
    assert "ldct_scripts.monailabel_app.lib" not in expected  # MONAI Label loads that app from its folder


def test_the_orchestration_code_imports_under_its_own_name():
    for name in ("ldct_scripts.studies.engine", "ldct_scripts.studies.domain_adaptation", "ldct_scripts.bundle_import", "ldct_scripts.zoo.package_bundle",
                 "ldct_scripts.examples.demo_simulation", "ldct_scripts.bench.bench_sim", "ldct_scripts.deploy_app.app"):
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().is_relative_to(ROOT / "scripts"), name


def test_no_path_hacks_outside_the_one_import_helper():
    import re

    allowed = {"scripts/bundle_import.py", "tests/conftest.py"}
    pattern = re.compile(r"sys\.path\.(insert|append)\(|spec_from_file_location\(")
    found = sorted(str(p.relative_to(ROOT)) for folder in ("scripts", "tests", "ldct_sim") for p in (ROOT / folder).rglob("*.py")
                   if pattern.search(p.read_text(encoding="utf-8")))
    assert [f for f in found if f not in allowed] == [], "import through ldct_scripts.bundle_import instead"
