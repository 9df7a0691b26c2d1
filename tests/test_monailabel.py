"""MONAI Label 0.8.5 runs both bundles: inference and fine-tuning tasks, the app and its server.

Needs ``pip install torch==2.13.0 -e ".[label]" && pip install --no-deps monailabel==0.8.5`` (what
``.ci/run`` does); skipped with that hint where monailabel is not importable. Every test works on
copies of the bundles in a temporary folder: the repository's bundle files are never written.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

import monai.bundle

from bundle_loading import bundle_scripts, bundle_scripts_as_scripts

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "scripts" / "monailabel_app"
MU_WATER = 0.2059  # cm^-1, water at 60 keV
INSTALL = 'pip install torch==2.13.0 -e ".[label]" && pip install --no-deps monailabel==0.8.5'

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("monailabel") is None, reason=f"monailabel is not installed; install it with: {INSTALL}"
)


@pytest.fixture(scope="module")
def ml() -> SimpleNamespace:
    """The app's adapter classes, imported as MONAI Label does (app folder on sys.path, package `lib`)."""
    from ldct_scripts.bundle_import import folder_on_path

    with folder_on_path(APP):
        from lib.compat import import_monailabel, missing_packages

        import_monailabel()
        from lib.infers import DenoiseBundleInferTask
        from lib.trainers import EXPORT_NAME
        from monailabel.tasks.infer.bundle import BundleInferTask
    return SimpleNamespace(
        missing_packages=missing_packages, Infer=DenoiseBundleInferTask, Stock=BundleInferTask, EXPORT_NAME=EXPORT_NAME
    )


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory) -> Path:
    """A copy of the app folder for commands that run it (MONAI Label's server creates logs/, model/ in it)."""
    dst = tmp_path_factory.mktemp("app") / "monailabel_app"
    shutil.copytree(APP, dst, ignore=shutil.ignore_patterns("__pycache__", "model", "logs", "bin"))
    return dst


@pytest.fixture(autouse=True)
def _restore_imports():
    """MONAI Label's bundle tasks put bundle folders on sys.path and drop `scripts` modules; the bundle configs
    add their folder to sys.path. Undo both after each test, for other tests in this process."""
    path = list(sys.path)
    scripts = {k: v for k, v in sys.modules.items() if k == "scripts" or k.startswith("scripts.")}
    yield
    sys.path[:] = path
    for k in [k for k in sys.modules if k == "scripts" or k.startswith("scripts.")]:
        del sys.modules[k]
    sys.modules.update(scripts)


# ---------------------------------------------------------------------------------------------------------
# fixtures: tiny phantoms and copies of the bundles


def _phantom(shape=(48, 40), sigma=0.01, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) slice in cm^-1: a water disk (0.2059) in air (0) plus seeded Gaussian noise (sigma cm^-1)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = np.where((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) * 0.4) ** 2, MU_WATER, 0.0)
    noisy = clean + sigma * np.random.default_rng(seed).standard_normal(shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


AFFINE = np.array([[0.7, 0, 0, -10.0], [0, 0.8, 0, 20.0], [0, 0, 5.0, 30.0], [0, 0, 0, 1]])  # mm


def _save(array, path, affine=AFFINE) -> str:
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine), str(path))
    return str(path)


def _load(path) -> nib.Nifti1Image:
    return nib.load(str(path))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """Both bundles copied (without sample data and run outputs); a seeded CPCE placeholder if no weights yet."""
    root = tmp_path_factory.mktemp("bundles")
    for name in ("unet_ldct", "cpce_rfm_da"):
        shutil.copytree(REPO / "bundles" / name, root / name, ignore=shutil.ignore_patterns("sample_data", "runs", "eval", "logs", "data", "__pycache__"))
    cpce = root / "cpce_rfm_da" / "models" / "model.pt"
    if not cpce.is_file():  # weights trained by the lead land later; shapes and units do not depend on them
        torch.manual_seed(0)
        net = bundle_scripts("cpce_rfm_da").networks.CPCE2D(in_channels=1, out_channels=1, channels=32)
        cpce.parent.mkdir(exist_ok=True)
        torch.save(net.state_dict(), cpce)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("images")
    noisy, _ = _phantom()
    vol = np.stack([_phantom((32, 32), seed=s)[0] for s in range(3)], axis=-1)
    return {
        "mu": _save(noisy, d / "slice_mu.nii.gz"),
        "hu": _save((noisy / MU_WATER - 1.0) * 1000.0, d / "slice_hu.nii.gz"),
        "volume": _save(vol, d / "volume_mu.nii.gz"),
    }


def _infer(task, image, **request):
    out, result = task({"image": image, "device": "cpu", **request})
    assert isinstance(out, str) and os.path.isfile(out), result
    img = _load(out)
    data = np.asarray(img.dataobj)
    os.remove(out)
    return img, data


# ---------------------------------------------------------------------------------------------------------
# the label extra and the import stand-ins


def _top_level_imports(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in tree.body:  # module level only: what must be installed for the import to succeed
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"monailabel", "lib", "__future__"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", name, maxsplit=1)[0]).lower()


def test_label_extra_lists_what_monailabel_imports_and_no_torch(ml):
    """Every package that the app's monailabel modules import at module level is in the label extra or
    the base dependencies (torchvision and pydicom_seg get stand-ins), and the extra pulls no torch."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = {_norm(r) for r in project["optional-dependencies"]["label"]}
    base = {_norm(r) for r in project["dependencies"]}
    assert not extra & {"torch", "torchvision"}, "the label extra must never pull torch or torchvision"
    for module in ("monailabel.app", "monailabel.main", "monailabel.interfaces.utils.app", "main"):
        if module == "main":
            from monailabel.utils.others.class_utils import module_from_file

            module_from_file("main", str(APP / "main.py"))  # as MONAI Label loads the app
        else:
            importlib.import_module(module)
    dists = md.packages_distributions()
    used: set[str] = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "monailabel" or not getattr(module, "__file__", None):
            continue
        for top in _top_level_imports(module) - {"torchvision", "pydicom_seg"}:
            providers = {_norm(d) for d in dists.get(top, [])}
            assert providers, f"{name} imports {top}, which no installed distribution provides"
            # a requirement provides its own distribution or, like the itk metapackage, its parts (itk-core, ...)
            found = {r for r in extra | base if r in providers or any(p.startswith(r + "-") for p in providers)}
            assert found, f"{name} imports {top} (from {sorted(providers)}), missing from the label extra"
            used |= found
    # the extra holds nothing monailabel does not import, but fastapi's own optional needs
    assert extra - used <= {"python-multipart", "httpx"}, sorted(extra - used)


def test_stand_ins_only_where_packages_are_missing_and_raise_clearly(ml):
    import monailabel.datastore.utils.convert as convert
    import monailabel.transform.post as post

    missing = ml.missing_packages()
    assert "torchvision" not in sys.modules or "torchvision" not in missing  # never left in sys.modules
    assert "pydicom_seg" not in sys.modules or "pydicom_seg" not in missing
    if "torchvision" in missing:
        with pytest.raises(ImportError, match="torchvision is not installed"):
            post.make_grid(torch.zeros(1, 4, 4))
    if "pydicom_seg" in missing:
        with pytest.raises(ImportError, match="pydicom-seg, which does not work with pydicom 3"):
            convert.pydicom_seg.MultiClassWriter()


# ---------------------------------------------------------------------------------------------------------
# inference


def test_unet_infer_task_matches_the_bundle_command(ml, bundles, images, tmp_path):
    """The adapter's result equals the bundle's own `monai.bundle run configs/inference.json` on the same slice: shape, affine,
    float32 cm^-1 values; the shipped weights keep water at 0.2059 cm^-1 and lower the noise."""
    bundle = bundles / "unet_ldct"
    task = ml.Infer(str(bundle), {})
    assert task.is_valid() and task.type == "others" and task.labels == [] and task.dimension == 2
    img, out = _infer(task, images["mu"])
    noisy = np.asarray(nib.load(images["mu"]).dataobj)
    assert out.shape == noisy.shape == (48, 40) and out.dtype == np.float32
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
    assert np.isfinite(out).all()

    (tmp_path / "in").mkdir()
    shutil.copy(images["mu"], tmp_path / "in")
    # `python -m monai.bundle run --config_file configs/inference.json --dataset_dir IN --output_dir OUT`, in process
    bundle_scripts_as_scripts("unet_ldct")
    monai.bundle.run(config_file=str(bundle / "configs" / "inference.json"), meta_file=str(bundle / "configs" / "metadata.json"),
                     bundle_root=str(bundle), dataset_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    (cli,) = (tmp_path / "out").glob("*.nii.gz")
    np.testing.assert_allclose(out, np.asarray(nib.load(str(cli)).dataobj).squeeze(), rtol=0, atol=1e-6)

    _, clean = _phantom()
    inner = np.zeros_like(clean, dtype=bool)
    inner[14:34, 10:30] = True  # well inside the water disk (radius 16 px around (24, 20))
    assert abs(out[inner].mean() - MU_WATER) < 0.01 * MU_WATER  # within 1 % (10 HU) of water
    assert out[inner].std() < 0.6 * noisy[inner].std()


def test_hu_input_gives_hu_output_consistent_with_mu(ml, bundles, images):
    """`input_unit: hu` per request: the same slice in HU comes back in HU, equal to the cm^-1 result
    converted by HU = (mu / mu_water - 1) * 1000 (the network sees mu / mu_water = HU / 1000 + 1 either way)."""
    task = ml.Infer(str(bundles / "unet_ldct"), {})
    _, out_mu = _infer(task, images["mu"])
    _, out_hu = _infer(task, images["hu"], input_unit="hu")
    np.testing.assert_allclose(out_hu, (out_mu / MU_WATER - 1.0) * 1000.0, rtol=0, atol=0.05)
    _, again = _infer(task, images["mu"])  # the unit switches back per request
    np.testing.assert_array_equal(again, out_mu)
    with pytest.raises(Exception, match="input_unit must be one of"):
        task({"image": images["mu"], "device": "cpu", "input_unit": "kelvin"})


@pytest.mark.parametrize("bundle", ["unet_ldct", "cpce_rfm_da"])
def test_volume_and_slice_keep_shape_affine_and_unit(ml, bundles, images, bundle):
    task = ml.Infer(str(bundles / bundle), {})
    assert task.is_valid()
    for key, shape in (("volume", (32, 32, 3)), ("mu", (48, 40))):
        img, out = _infer(task, images[key])
        assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
        np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)
        assert -0.5 < float(out.mean()) < 1.0  # cm^-1, not HU and not the network's [0, 1] scale


@pytest.mark.parametrize("bundle", ["unet_ldct", "cpce_rfm_da"])
def test_stock_bundle_infer_task_values_match_adapter(ml, bundles, images, bundle):
    """MONAI Label's own BundleInferTask runs the inference config as it is: same values as the adapter,
    but announced as a segmentation model and written as a (1, H, W) volume for a 2-D slice."""
    bundle = str(bundles / bundle)
    stock = ml.Stock(bundle, {})
    channels = json.loads(Path(bundle, "configs", "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert stock.is_valid() and stock.type == "segmentation"
    assert stock.labels == {v.lower(): int(k) for k, v in channels.items()}  # the output channel, taken for a class
    # Known ways a config breaks the stock task (the adapter copes with both): a loader that ignores the
    # image_only=False MONAI Label sets, and `@_meta_` references (it reads inference.json without metadata.json).
    out, _ = stock({"image": images["mu"], "device": "cpu"})
    data = np.asarray(nib.load(out).dataobj)
    os.remove(out)
    assert data.shape == (1, 48, 40) and data.dtype == np.float32
    _, ours = _infer(ml.Infer(bundle, {}), images["mu"])
    np.testing.assert_allclose(data[0], ours, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# training through the app, then inference with the fine-tuned weights; the server


def _studies(root: Path, n_pairs=4) -> Path:
    """MONAI Label's local datastore: low-dose images in the folder, normal-dose ones in labels/final."""
    (root / "labels" / "final").mkdir(parents=True)
    for i in range(n_pairs):
        noisy, clean = _phantom((48, 48), sigma=0.02, seed=10 + i)
        _save(noisy, root / f"case{i}.nii.gz")
        _save(clean, root / "labels" / "final" / f"case{i}.nii.gz")
    _save(_phantom((48, 48), seed=99)[0], root / "unlabelled.nii.gz")
    return root


_QUIET = {"MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
          "MONAI_LABEL_SESSIONS": "false"}


def _env(bundle: Path) -> dict:
    """Environment of `python -m monailabel.interfaces.utils.app`: the app's --conf pairs as JSON."""
    return dict(os.environ, MONAI_LABEL_APP_CONF=json.dumps({"bundles": str(bundle)}), **_QUIET)


@pytest.fixture
def quiet_settings(monkeypatch):
    """MONAI Label settings for an in-process app: no datastore watcher thread, no sessions in ~/.cache."""
    from monailabel.config import settings

    for key in ("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "MONAI_LABEL_SESSIONS", "MONAI_LABEL_AUTO_UPDATE_SCORING"):
        monkeypatch.setattr(settings, key, False)
    return settings


def test_finetune_through_the_app_then_infer_with_new_weights(ml, quiet_settings, app_copy, bundles, tmp_path):
    """The app (loaded from main.py as MONAI Label loads it) trains on its datastore: 4 pairs, val_split 0.25
    -> 3 training pairs, batch 2 -> ceil(3/2) = 2 iterations per pass, 1 pass. It starts from the shipped
    weights (two Adam steps of lr 1e-4 move no weight by more than 1e-3), exports models/model_finetuned.pt,
    which reloads strictly and is what the app's inference uses next."""
    from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

    bundle = tmp_path / "unet_ldct"
    shutil.copytree(bundles / "unet_ldct", bundle)
    studies = _studies(tmp_path / "studies")
    app_class = get_class_of_subclass_from_file("main", str(app_copy / "main.py"), "MONAILabelApp")
    app = app_class(app_dir=str(app_copy), studies=str(studies), conf={"bundles": str(bundle)})
    assert set(app.info()["models"]) == set(app.info()["trainers"]) == {"unet_ldct"}

    request = {"model": "unet_ldct", "max_epochs": 1, "val_split": 0.25, "batch_size": 2, "patch_size": 32,
               "num_workers": 0, "device": "cpu"}
    result = app.train(request)
    exported = bundle / "models" / ml.EXPORT_NAME
    assert result["model"] == str(exported) and exported.is_file()
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == bundle / "runs" / "monailabel"
    assert [p.name for p in (run_dir / "checkpoints").glob("checkpoint_iteration=*.pt")] == ["checkpoint_iteration=2.pt"]

    net = bundle_scripts("unet_ldct").networks.LDCTUNet(in_channels=1, out_channels=1, negative_slope=0.2, pad_mode="reflect")
    tuned = torch.load(exported, map_location="cpu", weights_only=True)
    net.load_state_dict(tuned, strict=True)
    shipped = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    diff = max(float((tuned[k].float() - shipped[k].float()).abs().max()) for k in shipped)
    assert 1e-6 < diff < 1e-3, diff

    assert app._infers["unet_ldct"].config()["model_filename"][0] == ml.EXPORT_NAME  # newest first
    outputs = []
    for extra in ({}, {"model_filename": "model.pt"}):
        res = app.infer({"model": "unet_ldct", "image": "case0", "device": "cpu", **extra})  # an image id of the datastore
        outputs.append(np.asarray(nib.load(res["file"]).dataobj))
        os.remove(res["file"])
    assert outputs[0].shape == (48, 48) and np.abs(outputs[0] - outputs[1]).max() > 1e-6


@pytest.mark.slow
def test_cpce_domain_adaptation_uses_unlabelled_studies_as_target(ml, app_copy, bundles, tmp_path):
    """CPCE + RFM through the app: the studies' image without a final label becomes the target domain."""
    bundle = tmp_path / "cpce_rfm_da"
    shutil.copytree(bundles / "cpce_rfm_da", bundle)
    studies = _studies(tmp_path / "studies", n_pairs=2)
    request = {"model": "cpce_rfm_da", "max_epochs": 1, "val_split": 0.5, "batch_size": 1, "patch_size": [32, 32],
               "num_workers": 0, "device": "cpu"}
    cmd = [sys.executable, "-m", "monailabel.interfaces.utils.app", "-a", str(app_copy), "-s", str(studies),
           "-m", "train", "-r", json.dumps(request), "-o", str(tmp_path / "result.json")]
    done = subprocess.run(cmd, env=_env(bundle), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "> baseline: False" in done.stdout + done.stderr
    assert f"> train#target_data: [{{'image': '{studies / 'unlabelled.nii.gz'}'}}]" in done.stdout + done.stderr
    net = bundle_scripts("cpce_rfm_da").networks.CPCE2D(in_channels=1, out_channels=1, channels=32)
    net.load_state_dict(torch.load(bundle / "models" / ml.EXPORT_NAME, map_location="cpu", weights_only=True), strict=True)


def test_bundles_by_name_are_copied_into_the_app_and_paths_used_in_place(ml, tmp_path):
    from lib.bundles import resolve_bundles  # imported by the ml fixture

    source = tmp_path / "repo_bundles"
    (source / "b1" / "configs").mkdir(parents=True)
    (source / "b1" / "configs" / "metadata.json").write_text("{}")
    (source / "b1" / "runs").mkdir()
    app = tmp_path / "app"
    found = resolve_bundles(str(app), {"bundles": f"b1, {source / 'b1'}", "bundles_dir": str(source)})
    assert found == {"b1": str(source / "b1")}  # same name: the path entry, listed last, wins
    found = resolve_bundles(str(app), {"bundles": "b1", "bundles_dir": str(source)})
    assert found == {"b1": str(app / "model" / "b1")}
    assert (app / "model" / "b1" / "configs" / "metadata.json").is_file() and not (app / "model" / "b1" / "runs").exists()
    with pytest.raises(FileNotFoundError, match="not a bundle folder"):
        resolve_bundles(str(app), {"bundles": "nope", "bundles_dir": str(source)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_lists_models_and_returns_a_denoised_image(app_copy, bundles, tmp_path):
    """`python scripts/monailabel_app/server.py` (MONAI Label's start_server): /info/ lists both bundles
    as `others` models with a trainer; POST /infer/<model>?output=image returns the float NIfTI."""
    studies = _studies(tmp_path / "studies", n_pairs=1)
    port = _free_port()
    conf = ["--conf", "bundles", f"{bundles / 'unet_ldct'},{bundles / 'cpce_rfm_da'}"]
    cmd = [sys.executable, str(app_copy / "server.py"), "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port), *conf]
    env = dict(os.environ, **_QUIET)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
        for _ in range(240):
            try:
                info = json.load(http.open(f"{url}/info/", timeout=5))
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
                time.sleep(0.5)
        else:
            pytest.fail("server did not answer: " + (tmp_path / "server.log").read_text()[-4000:])
        assert set(info["models"]) == {"unet_ldct", "cpce_rfm_da"}
        assert {m["type"] for m in info["models"].values()} == {"others"}
        assert set(info["trainers"]) == {"unet_ldct", "cpce_rfm_da"}
        req = urllib.request.Request(f"{url}/infer/unet_ldct?image=case0&output=image", data=b"params=%7B%7D",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}, method="POST")
        body = http.open(req, timeout=120).read()
        (tmp_path / "result.nii.gz").write_bytes(body)
        out = nib.load(str(tmp_path / "result.nii.gz"))
        data = np.asarray(out.dataobj)
        assert data.shape == (48, 48) and data.dtype == np.float32 and np.isfinite(data).all()
        np.testing.assert_allclose(out.affine, AFFINE, atol=1e-5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
