"""The README's two set-up commands: exactly two at the top, the second run word for word by ``.ci/run``,
the base install free of the Deploy stack, and the first command's output folder ignored by git."""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _top_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    top = readme.split("\n## ", 1)[0]  # everything before the first section
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", top, flags=re.S)]


def test_readme_has_exactly_two_one_line_setup_commands_at_the_top():
    commands = _top_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), commands
    assert commands[0].startswith("pip install torch==2.13.0 -e . ")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_word_for_word():
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert _top_commands()[1] in ci_lines


def test_every_install_pins_torch_so_pip_never_pulls_a_cuda_build():
    for command in _top_commands() + [(ROOT / ".ci" / "run").read_text()]:
        for install in re.findall(r"pip install (?!--no-deps)[^&\n]*", command):
            assert "torch==2.13.0" in install, install


def test_base_install_is_lean_and_each_door_has_its_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    # monai.deploy is a monai.* submodule, so `import monai` imports it (and holoscan, which warns about
    # the stack size) wherever it is installed: it must stay out of the base install.
    for heavy in ("monai-deploy", "holoscan", "cupy", "monailabel", "onnx"):
        assert heavy not in base, heavy
    extras = {k: " ".join(v).lower() for k, v in project["optional-dependencies"].items()}
    assert "monai-deploy-app-sdk" in extras["deploy"]
    assert "pyyaml" in extras["zoo"] and "jsonschema" in extras["zoo"]  # download_large_files, verify_bundle.py
    assert "onnxruntime" in extras["zoo"]
    for door in ("zoo", "deploy", "label"):
        assert door in extras["dev"], f"the test install must cover the {door} door"


def test_demo_output_is_ignored_and_no_stray_files_are_tracked():
    ignored = subprocess.run(["git", "check-ignore", "-q", "demo/simulation.png"], cwd=ROOT)
    assert ignored.returncode == 0, "demo/ (the README's first command's output) must be in .gitignore"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    odd = [name for name in tracked.splitlines() if re.search(r"[|\s]", name)]
    assert odd == [], f"tracked files with spaces or pipes in their names: {odd}"
