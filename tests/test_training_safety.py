"""Training never touches what it was not asked to write, and Ctrl-C leaves a checkpoint and a way back (issue 10).

* Ctrl-C during ``train.json`` (both bundles, run as users run it: ``python -m monai.bundle run`` in a
  subprocess): one line naming the checkpoint written at the stop and the exact command that resumes,
  exit status 130, no traceback; the printed command resumes from that checkpoint.
* The cross-domain bundle trains into ``runs/train`` by default, refuses a ``--ckpt_dir`` holding weights
  no training run wrote (such as ``models/``), and ships weights only through ``python -m scripts.export``.

Tiny data (32² NIfTI in cm⁻¹) written here; every run is a few seconds on CPU.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts, bundle_scripts_as_scripts

REPO = Path(__file__).resolve().parents[1]
UNET = REPO / "bundles" / "unet_ldct"
CPCE = REPO / "bundles" / "cpce_rfm_da"
MU_W = 0.2059
N = 32
MESSAGE = re.compile(
    r"Training interrupted at iteration (\d+) \(epoch (\d+)\); last checkpoint: (\S+\.pt); "
    r"to resume from it, run: (python -m monai\.bundle run .*)$",
    re.MULTILINE,
)
CPCE_TINY = [
    "--batch_size", "2", "--patch_size", "[32,32]", "--num_workers", "0", "--cache_rate", "0",
    "--use_perceptual", "False",
    "--align_discriminator#channels", "[8,16]", "--align_discriminator#strides", "[1,2]",
    "--align_discriminator#hidden", "16", "--image_discriminator#channels", "[8,16]",
    "--image_discriminator#strides", "[1,2]", "--image_discriminator#hidden", "16",
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # a bundle needs neither ldct_sim nor the repository's scripts/
    return env


def _phantom(i: int) -> np.ndarray:
    yy, xx = np.mgrid[:N, :N]
    img = np.zeros((N, N), np.float32)
    img[(yy - 16) ** 2 + (xx - 16) ** 2 <= 12**2] = MU_W
    img[(yy - 12 - i) ** 2 + (xx - 18) ** 2 <= 9] = 0.25
    return img


def _save(path: Path, img: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img, np.diag([0.7, 0.7, 1.0, 1.0])), path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """U-Net layout (``res700um/datalist.json``) and cross-domain layout (source/target/validation)."""
    root = tmp_path_factory.mktemp("train_safety")
    rng = np.random.default_rng(0)
    unet = {"training": [], "validation": []}
    cpce = {"source": [], "target": [], "validation": []}
    for split, n in (("training", 4), ("validation", 2)):
        for i in range(n):
            label = _phantom(i)
            image = label + rng.normal(0, 0.01, label.shape).astype(np.float32)
            _save(root / "res700um" / "input" / f"{split}{i}.nii.gz", image)
            _save(root / "res700um" / "label" / f"{split}{i}.nii.gz", label)
            unet[split].append({"image": f"input/{split}{i}.nii.gz", "label": f"label/{split}{i}.nii.gz"})
    (root / "res700um" / "datalist.json").write_text(json.dumps(unet))
    for key, n in (("source", 4), ("target", 4), ("validation", 2)):
        for i in range(n):
            label = _phantom(i)
            entry = {"image": _save(root / "cd" / key / f"{i}_ldct.nii.gz", label + rng.normal(0, 0.01, label.shape).astype(np.float32))}
            if key != "target":
                entry["label"] = _save(root / "cd" / key / f"{i}_ndct.nii.gz", label)
            cpce[key].append(entry)
    (root / "cd" / "datalist.json").write_text(json.dumps(cpce))
    return root


def _interrupt_after(bundle: Path, args: list[str], ckpt_dir: Path, pattern: str, log: Path, timeout: float = 400):
    """Start ``python -m monai.bundle <args>`` in ``bundle``; send SIGINT once ``ckpt_dir/pattern`` exists."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        # pytest-xdist's workers ignore SIGINT, and children inherit that (the bundle then keeps it
        # ignored, as for a background job): start the run as a terminal would, with SIGINT's default.
        proc = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=bundle, env=_env(),
                                stdout=out, stderr=err, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        t0 = time.time()
        try:
            while not list(ckpt_dir.glob(pattern)):
                assert proc.poll() is None, f"training ended ({proc.returncode}) before its first checkpoint"
                assert time.time() - t0 < timeout, "no checkpoint in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def _check_interrupt_report(rc, out, err, args):
    assert rc == 130, f"exit {rc}\n{err[-3000:]}"
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    found = MESSAGE.findall(err)
    assert len(found) == 1, err[-3000:]
    iteration, epoch, path, command = found[0]
    assert shlex.split(command)[3:] == args  # the very command that was run (resume is on by default)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["iteration"] == int(iteration)  # written at the stop, not an older one
    return int(iteration), int(epoch), Path(path)


def test_unet_ctrl_c_saves_a_checkpoint_names_it_and_resumes(data, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--config_file", "configs/train.json", "--dataset_dir", str(data), "--resolution", "700",
            "--output_dir", str(out), "--batch_size", "2", "--patch_size", str(N), "--num_workers", "0",
            "--num_iterations", "400", "--val_interval", "4", "--save_interval", "2"]
    rc, log, err = _interrupt_after(UNET, args, out / "checkpoints", "checkpoint_iteration=*.pt", tmp_path / "first")
    iteration, _, path = _check_interrupt_report(rc, log, err, args)
    assert path.parent == out / "checkpoints" and path.name == f"checkpoint_iteration={iteration}.pt"
    assert [p.name for p in path.parent.glob("checkpoint_*.pt")] == [path.name]  # the older one replaced
    assert not [p for p in path.parent.iterdir() if not p.name.endswith(".pt")]  # no temporary files left
    # the printed command, with a shorter length, resumes from the named checkpoint
    total = (iteration // 4 + 1) * 4
    again = args[:args.index("--num_iterations") + 1] + [str(total)] + args[args.index("--num_iterations") + 2:]
    r = subprocess.run([sys.executable, "-m", "monai.bundle", *again], cwd=UNET, env=_env(), capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {path} at iteration {iteration}" in r.stdout + r.stderr
    last = torch.load(out / "checkpoints" / f"checkpoint_iteration={total}.pt", weights_only=True)
    assert last["trainer"]["iteration"] == total


def test_cpce_ctrl_c_saves_a_checkpoint_names_it_and_resumes(data, tmp_path):
    run = tmp_path / "run"
    args = ["run", "--config_file", "configs/train.json", "--datalist", str(data / "cd" / "datalist.json"),
            "--ckpt_dir", str(run), "--max_epochs", "200", *CPCE_TINY]
    rc, log, err = _interrupt_after(CPCE, args, run, "checkpoint_epoch=*.pt", tmp_path / "first")
    iteration, epoch, path = _check_interrupt_report(rc, log, err, args)
    assert path == run / f"checkpoint_epoch={epoch}.pt"  # named after the epoch in progress
    assert [p.name for p in run.glob("checkpoint_*.pt")] == [path.name]
    assert not (run / "model_final.pt").exists()  # an interrupted run has no final weights
    again = args[:args.index("--max_epochs") + 1] + [str(epoch + 1)] + args[args.index("--max_epochs") + 2:]
    r = subprocess.run([sys.executable, "-m", "monai.bundle", *again], cwd=CPCE, env=_env(), capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {path} at iteration" in r.stdout + r.stderr  # one message in both bundles
    last = torch.load(run / f"checkpoint_epoch={epoch + 1}.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * (epoch + 1)  # 4 source images, batch 2: 2 iterations per epoch
    assert (run / "model_final.pt").is_file()


def test_cpce_trains_into_a_run_folder_and_never_into_models(tmp_path):
    bundle_scripts_as_scripts("cpce_rfm_da")
    from monai.bundle import ConfigWorkflow

    def workflow(**override):
        return ConfigWorkflow(config_file=str(CPCE / "configs" / "train.json"), workflow_type="train",
                              logging_file=False, bundle_root=str(CPCE), **override)

    default = workflow()
    assert Path(default.parser.get_parsed_content("ckpt_dir")) == CPCE / "runs" / "train"
    assert Path(default.parser.get_parsed_content("output_dir")) == CPCE / "runs" / "train" / "logs"
    # a folder holding weights no training wrote (the shipped models/ layout) is refused before any write
    shipped = tmp_path / "models"
    shipped.mkdir()
    torch.save({"w": torch.ones(2)}, shipped / "model.pt")
    before = (shipped / "model.pt").read_bytes()
    wf = workflow(ckpt_dir=str(shipped), datalist=str(tmp_path / "absent.json"), use_perceptual=False)
    with pytest.raises(RuntimeError) as err:
        wf.initialize()
    text = str(err.value.__cause__)
    assert f"--ckpt_dir '{shipped}' holds model.pt but no training checkpoint" in text
    assert "python -m scripts.export" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert sorted(p.name for p in shipped.iterdir()) == ["model.pt"] and (shipped / "model.pt").read_bytes() == before


def test_cpce_export_writes_checked_float32_weights_and_refuses_others(tmp_path, capsys):
    S = bundle_scripts("cpce_rfm_da")
    export = importlib.import_module(f"{S.__name__}.export")
    torch.manual_seed(0)
    full, wrong = tmp_path / "checkpoint_epoch=3.pt", tmp_path / "wrong.pt"
    torch.save({"model": {k: v.half() for k, v in S.networks.CPCE2D().state_dict().items()}, "optimizer": {}}, full)
    torch.save({"conv1.weight": torch.ones(3)}, wrong)
    dst = tmp_path / "ship" / "model.pt"
    assert export.main([str(full), str(dst)]) == 0
    sd = torch.load(dst, weights_only=True)
    assert len(sd) and all(v.dtype == torch.float32 for v in sd.values())
    for bad, why in ((wrong, "does not hold CPCE-2D weights"), (tmp_path / "none.pt", "not found")):
        before = dst.read_bytes()
        capsys.readouterr()
        assert export.main([str(bad), str(dst)]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and why in err
        assert dst.read_bytes() == before and sorted(p.name for p in dst.parent.iterdir()) == ["model.pt"]


def test_interrupt_handler_is_identical_in_both_bundles():
    assert (UNET / "scripts" / "interrupt.py").read_bytes() == (CPCE / "scripts" / "interrupt.py").read_bytes()
