"""Files of a dataset folder (see :mod:`ldct_sim.dataset`): atomic JSON/NIfTI writes and the done-check of a slice."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from .dataset import ROLES


def _tmp_tag() -> str:
    """A temporary-name suffix unique across processes and machines sharing a folder."""
    return f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_tmp_tag()}")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_nifti(path: Path, image: np.ndarray, affine: np.ndarray, descrip: str) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(image, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = descrip.encode()[:79]
    tmp = path.with_name(f".{path.name[: -len('.nii.gz')]}.{_tmp_tag()}.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


def _loads(path: Path, n: int | None) -> bool:
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception:  # noqa: BLE001 - a truncated or corrupt file raises anything; it is recomputed
        return False
    square = data.shape[0] == data.shape[1] if n is None else data.shape[:2] == (n, n)  # None: the slice's own side
    return square and bool(np.isfinite(data).all())


def _files(job_id: str) -> dict[str, str]:
    return {key: f"{role}/{job_id}.nii.gz" for role, key in ROLES.items()}


def _is_done(res_dir: Path, sid: str, fingerprint: str, n: int | None, *, verify: bool = True) -> bool:
    rec = _read_json(res_dir / "records" / f"{sid}.json")
    if not isinstance(rec, dict) or rec.get("fingerprint") != fingerprint:
        return False
    for rel in _files(sid).values():
        p = res_dir / rel
        if not (p.is_file() and (not verify or _loads(p, n))):
            return False
    return True


