"""Model-zoo conformance of every bundle: ``ldct_scripts.zoo.verify_bundles`` (scripts/zoo/verify_bundles.py) runs the zoo's checks in full mode.

Each bundle is verified once per session, as users run it (``python -m ldct_scripts.zoo.verify_bundles <bundle>``,
the two bundles side by side in their own interpreters); the tests read its JSON report and the
exports it keeps, and check the exported TorchScript against the bundle's network independently.
Broken copies of the (small) cross-domain bundle show that each check fails with a message that names
the problem. The metadata schema is ``--schema`` or ``../shared/monai/meta_schema_20240725.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle_loading import bundle_scripts
from session_cache import once_per_session

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("cpce_rfm_da", "unet_ldct")
DEFAULT_SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"
#: Every check the zoo runs, and the workflows each bundle has.
EXPECTED = {
    "cpce_rfm_da": ["files", "version", "metadata", "net_in_out", "checkpoint", "torchscript",
                    "properties:inference", "properties:train", "properties:evaluate"],
    "unet_ldct": ["files", "version", "metadata", "net_in_out", "checkpoint", "torchscript",
                  "properties:inference", "properties:train", "properties:evaluate", "properties:finetune"],
}
NEEDS_WEIGHTS = ("checkpoint", "torchscript")


def _verify_module():
    """``ldct_scripts.zoo.verify_bundles`` (imported on first use: it imports MONAI)."""
    import ldct_scripts.zoo.verify_bundles as module

    return module


@pytest.fixture(scope="session")
def schema(request):
    path = request.config.getoption("--schema") or (str(DEFAULT_SCHEMA) if DEFAULT_SCHEMA.is_file() else None)
    if path and not Path(path).is_file():
        pytest.fail(f"--schema {path!r} is not a file")
    return path


def _run_verifiers(root: Path, schema: str | None) -> None:
    """``python -m ldct_scripts.zoo.verify_bundles <bundle> --json ...`` for each bundle, side by side."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    procs = {}
    for b in BUNDLES:
        cmd = [sys.executable, "-m", "ldct_scripts.zoo.verify_bundles", b, "--json", str(root / f"{b}.json"),
               "--workdir", str(root / "work")]
        cmd += ["--schema", schema] if schema else ["--checks", "files,version,net_in_out,checkpoint,torchscript,properties"]
        procs[b] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for b, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        (root / f"{b}.out").write_text(json.dumps({"rc": p.returncode, "stdout": stdout, "stderr": stderr[-5000:]}))


@pytest.fixture(scope="module")
def reports(tmp_path_factory, schema):
    """``{bundle: (exit status, stdout, {check: result}, workdir)}`` of one verifier run per bundle."""
    root = once_per_session(tmp_path_factory, "zoo_reports", lambda folder: _run_verifiers(folder, schema))
    out = {}
    for b in BUNDLES:
        run = json.loads((root / f"{b}.out").read_text())
        path = root / f"{b}.json"
        assert path.is_file(), f"verify_bundles.py {b} wrote no report (exit {run['rc']}):\n{run['stderr']}"
        results = {r["check"]: r for r in json.loads(path.read_text())["results"]}
        out[b] = (run["rc"], run["stdout"], results, root / "work" / b)
    return out


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_passes_every_model_zoo_check(reports, bundle, schema):
    rc, stdout, results, _ = reports[bundle]
    expected = [c for c in EXPECTED[bundle] if schema or c != "metadata"]
    assert list(results) == expected
    has_weights = (REPO / "bundles" / bundle / "models" / "model.pt").is_file()
    for check, r in results.items():
        want = "skip" if check in NEEDS_WEIGHTS and not has_weights else "pass"
        assert r["status"] == want, f"{bundle} {check}: {r['status']}: {r['detail']}"
    assert rc == 0, stdout
    # the table names each check's result, and the summary counts them
    assert f"{len(expected) - (0 if has_weights else 2)} passed, 0 failed" in stdout
    rows = {tuple(line.split()[:2]): line.split()[2] for line in stdout.splitlines() if line.startswith(bundle)}
    assert {c: rows.get((bundle, c)) for c in expected} == {c: results[c]["status"].upper() for c in expected}
    if not schema:
        pytest.skip("metadata schema not checked: pass --schema PATH or put ../shared beside the clone")
    if not has_weights:
        pytest.skip(f"bundles/{bundle}/models/model.pt is absent: checkpoint and TorchScript checks skipped")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_torchscript_export_reloads_with_metadata_and_gives_the_checkpoints_output(reports, bundle):
    ckpt = REPO / "bundles" / bundle / "models" / "model.pt"
    if not ckpt.is_file():
        pytest.skip(f"bundles/{bundle}/models/model.pt is absent (weights not shipped yet)")
    from monai.data import load_net_with_metadata

    ts = reports[bundle][3] / f"{bundle}_model.ts"
    scripted, meta, extra = load_net_with_metadata(str(ts), more_extra_files=("inference.json",))
    card = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] == card["version"] and meta["network_data_format"] == card["network_data_format"]
    assert json.loads(extra["inference.json"])["network_def"] == json.loads(
        (REPO / "bundles" / bundle / "configs" / "inference.json").read_text())["network_def"]
    # the network built here from the bundle's own class and the shipped state dict, on another size
    nd = {k: v for k, v in json.loads(extra["inference.json"])["network_def"].items() if k != "_target_"}
    cls = getattr(bundle_scripts(bundle).networks, json.loads(extra["inference.json"])["network_def"]["_target_"].rsplit(".", 1)[1])
    net = cls(**nd).eval()
    net.load_state_dict(torch.load(ckpt, weights_only=True))
    x = torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- broken copies fail clearly
@pytest.fixture()
def broken(tmp_path):
    """A copy of the cross-domain bundle (configs, scripts, LICENSE, weights) to break; no logging.conf."""
    src = REPO / "bundles" / "cpce_rfm_da"
    dst = tmp_path / "cpce_copy"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "data", "runs", "logs", "eval", "logging.conf"))
    if not (dst / "models" / "model.pt").is_file():  # weights not shipped yet: the copy gets its own
        (dst / "models").mkdir(exist_ok=True)
        torch.save(bundle_scripts("cpce_rfm_da").networks.CPCE2D(channels=32).state_dict(), dst / "models" / "model.pt")
    return dst


def _edit_json(path: Path, fn):
    content = json.loads(path.read_text())
    fn(content)
    path.write_text(json.dumps(content, indent=1))


def _run(bundle, checks, schema=None, tmp=None):
    vb = _verify_module()
    results = vb.verify_bundle(bundle, schema=Path(schema) if schema else None, checks=tuple(checks), workdir=tmp)
    return {r.check: r for r in results}


def test_missing_licence_and_changelog_entry_fail_with_exit_status_1(broken, tmp_path, capsys):
    (broken / "LICENSE").unlink()
    _edit_json(broken / "configs" / "metadata.json", lambda m: m.update(version="9.9.9"))
    rc = _verify_module().main([str(broken), "--checks", "files,version", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 1
    r = {x["check"]: x for x in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert r["files"]["status"] == "fail" and "LICENSE" in r["files"]["detail"]
    assert r["version"]["status"] == "fail" and "'9.9.9' is missing in the 'changelog'" in r["version"]["detail"]
    assert "0 passed, 2 failed" in out and "FAIL" in out


def test_metadata_against_the_schema_names_the_missing_field(broken, schema):
    if not schema:
        pytest.skip("no metadata schema: pass --schema PATH or put ../shared beside the clone")
    _edit_json(broken / "configs" / "metadata.json", lambda m: m.pop("task"))
    r = _run(broken, ["metadata"], schema)["metadata"]
    assert r.status == "fail" and "'task' is a required property" in r.detail


def test_schema_is_required_or_downloaded_explicitly(tmp_path, monkeypatch, capsys):
    vb = _verify_module()
    monkeypatch.setattr(vb, "DEFAULT_SCHEMA", tmp_path / "absent.json")
    assert vb.main(["cpce_rfm_da", "--checks", "files,metadata"]) == 2
    err = capsys.readouterr().err
    assert "--schema PATH" in err and "--download-schema" in err and "verify_metadata" in err
    assert vb.main(["cpce_rfm_da", "--schema", str(tmp_path / "nope.json")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert vb.main(["cpce_rfm_da", "--checks", "files"]) == 0  # no schema needed without the metadata check


def test_output_not_named_pred_fails_net_in_out(broken):
    _edit_json(broken / "configs" / "metadata.json",
               lambda m: m["network_data_format"]["outputs"].update(out=m["network_data_format"]["outputs"].pop("pred")))
    r = _run(broken, ["net_in_out"])["net_in_out"]
    assert r.status == "fail" and "'pred'" in r.detail and "['out']" in r.detail


def test_weights_of_another_network_fail_the_torchscript_check(broken, tmp_path):
    wrong = bundle_scripts("cpce_rfm_da").networks.CPCE2D(channels=16).state_dict()
    torch.save(wrong, broken / "models" / "model.pt")
    r = _run(broken, ["checkpoint", "torchscript"], tmp=tmp_path)
    assert r["checkpoint"].status == "pass"  # a loadable CPU state dict ...
    assert r["torchscript"].status == "fail" and "size mismatch" in r["torchscript"].detail  # ... of the wrong shape


def test_inference_config_without_an_evaluator_fails_check_properties(broken, tmp_path):
    _edit_json(broken / "configs" / "inference.json", lambda c: c.pop("evaluator"))
    r = _run(broken, ["properties"], tmp=tmp_path)
    assert r["properties:inference"].status == "fail" and "evaluator" in r["properties:inference"].detail
    assert r["properties:train"].status == "pass"


def test_tiny_dataset_holds_water_in_cm_and_every_datalist_layout(tmp_path):
    import nibabel as nib
    import numpy as np

    root = _verify_module().make_tiny_dataset(tmp_path, n_pixels=32, n_items=4)
    dl = json.loads((root / "datalist_s2r.json").read_text())
    assert [len(dl[k]) for k in ("training", "validation", "test", "source", "target")] == [2, 1, 1, 2, 2]
    assert "label" not in dl["target"][0]
    label = nib.load(root / dl["test"][0]["label"]).get_fdata()
    image = nib.load(root / dl["test"][0]["image"]).get_fdata()
    assert label.shape == (32, 32) and set(np.unique(label).round(4)) == {0.0, 0.2059}
    assert abs(float((image - label).std()) - 0.004) < 0.001  # about 20 HU of noise
    with pytest.raises(ValueError, match="`n_items` must be at least 3"):
        _verify_module().make_tiny_dataset(tmp_path / "x", n_items=2)
