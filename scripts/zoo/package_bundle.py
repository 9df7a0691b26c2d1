"""Build the zip the MONAI model zoo distributes for one bundle: ``<name>_v<version>.zip``.

The zip holds the bundle folder as its top-level directory (``<name>/configs/...``), without what
runs leave behind: caches (``__pycache__``, ``*.pyc``, ``.pytest_cache``, ``.ipynb_checkpoints``,
hidden files), the bundle-level ``logs/``, ``eval/``, ``runs/`` and ``data/`` folders, and every
checkpoint or export (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.ts``, ``*.onnx``, ``*.safetensors``) other
than ``models/model.pt``. Files over the zoo's 25 MB limit are left out and listed in
``large_files.yml`` at the bundle root, as the zoo's bundles do (``path``, ``url``, ``hash_val``,
``hash_type: md5``); the ``url`` is a placeholder to fill in once the file is uploaded, and
``python -m monai.bundle download_large_files --bundle_path <bundle>`` fetches them.

Entries are written in sorted order with a fixed timestamp, so the same bundle gives the same zip.

Usage::

    python -m ldct_scripts.zoo.package_bundle bundles/unet_ldct                 # -> dist/unet_ldct_v0.3.0.zip
    python -m ldct_scripts.zoo.package_bundle bundles/cpce_rfm_da --output-dir /tmp/zoo
    python -m ldct_scripts.zoo.package_bundle bundles/unet_ldct --max-size-mb 10 --url-base https://host/unet_ldct/

A bundle without ``configs/metadata.json`` (with a ``version``) or ``LICENSE`` is refused (exit status 1).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ldct_scripts import REPO
from ldct_scripts.cli import parse_kebab
from ldct_scripts.files import atomic_path
from ldct_scripts.zoo.verify_bundles import file_md5  # one md5 helper for the zoo scripts

MAX_SIZE_MB = 25.0  # the model zoo's limit for files committed in a bundle
URL_PLACEHOLDER = "TODO: upload this file and put its download URL here"
#: Folders at the bundle root that hold run outputs or user data, never distributed.
EXCLUDED_ROOT_DIRS = ("logs", "eval", "runs", "data")
#: Folder and file names excluded anywhere.
EXCLUDED_NAMES = ("__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".git", "*.pyc", "*.pyo", ".*")
#: Checkpoint and export suffixes: only ``models/model.pt`` is distributed.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".ts", ".onnx", ".safetensors")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: reproducible archives

__all__ = ["BundlePackage", "BundleRefused", "collect_files", "package_bundle", "main"]


class BundleRefused(ValueError):
    """The folder is not a bundle the zoo would take (no metadata, version or licence)."""


@dataclass
class BundlePackage:
    """What ``package_bundle`` wrote: the zip, the files in it and those left to ``large_files.yml``."""

    zip_path: Path
    name: str
    version: str
    files: list[str] = field(default_factory=list)
    large_files: list[dict] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def _excluded(rel: Path) -> bool:
    parts = rel.parts
    if parts[0] in EXCLUDED_ROOT_DIRS and len(parts) > 1:
        return True
    if any(fnmatch.fnmatch(p, pat) for p in parts for pat in EXCLUDED_NAMES):
        return True
    return rel.suffix.lower() in CHECKPOINT_SUFFIXES and rel.as_posix() != "models/model.pt"


def collect_files(bundle: Path) -> tuple[list[Path], list[Path]]:
    """``(kept, excluded)`` paths relative to ``bundle``, sorted; see the module docstring for the rules.

    Args:
        bundle: the bundle folder.
    """
    kept, excluded = [], []
    for path in sorted(bundle.rglob("*")):
        if path.is_dir() or path.is_symlink():
            continue
        rel = path.relative_to(bundle)
        (excluded if _excluded(rel) else kept).append(rel)
    return kept, excluded


def _read_metadata(bundle: Path) -> dict:
    meta_path = bundle / "configs" / "metadata.json"
    missing = [f for f in ("configs/metadata.json", "LICENSE") if not (bundle / f).is_file()]
    if missing:
        raise BundleRefused(
            f"package_bundle: {bundle} is not a complete bundle: missing {', '.join(missing)} "
            "(the model zoo requires configs/metadata.json and LICENSE)."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleRefused(f"package_bundle: {meta_path} is not valid JSON: {e}.") from e
    version = str(meta.get("version", "")).strip()
    if not version:
        raise BundleRefused(f"package_bundle: {meta_path} has no `version`; the zip is named <name>_v<version>.zip.")
    if version not in meta.get("changelog", {}):
        raise BundleRefused(f"package_bundle: version {version!r} is missing in the `changelog` of {meta_path}.")
    return meta


def _large_files_yaml(entries: list[dict]) -> str:
    # Written by hand rather than with yaml.dump to keep the zoo's field order and quoting exactly.
    lines = ["large_files:"]
    for e in entries:
        lines += [
            f'  - path: "{e["path"]}"',
            f'    url: "{e["url"]}"',
            f'    hash_val: "{e["hash_val"]}"',
            f'    hash_type: "{e["hash_type"]}"',
        ]
    return "\n".join(lines) + "\n"


def package_bundle(
    bundle: str | Path,
    output_dir: str | Path = REPO / "dist",
    max_size_mb: float = MAX_SIZE_MB,
    url_base: str | None = None,
    name: str | None = None,
) -> BundlePackage:
    """Write ``<output_dir>/<name>_v<version>.zip`` for ``bundle``.

    Args:
        bundle: the bundle folder (holding ``configs/metadata.json`` and ``LICENSE``).
        output_dir: where the zip goes (created). Default ``dist/`` of the repository.
        max_size_mb: files larger than this (MB, 10^6 bytes) go to ``large_files.yml``. Default 25.
        url_base: ``url`` of large files becomes ``url_base + path``; default a placeholder to edit.
        name: the bundle's name in the zoo; default the folder's name.

    Raises:
        BundleRefused: no ``configs/metadata.json``, ``LICENSE``, ``version`` or changelog entry for it.
        FileNotFoundError: ``bundle`` is not a folder.
    """
    bundle = Path(bundle).resolve()
    if not bundle.is_dir():
        raise FileNotFoundError(f"package_bundle: `bundle` {str(bundle)!r} is not a folder.")
    if not max_size_mb > 0:
        raise ValueError(f"package_bundle: `max_size_mb` must be positive, got {max_size_mb!r}.")
    meta = _read_metadata(bundle)
    name = name or bundle.name
    version = str(meta["version"]).strip()
    kept, excluded = collect_files(bundle)
    large, small = [], []
    for rel in kept:
        (large if (bundle / rel).stat().st_size > max_size_mb * 1e6 else small).append(rel)
    entries = [
        {
            "path": rel.as_posix(),
            "url": (url_base.rstrip("/") + "/" + rel.as_posix()) if url_base else URL_PLACEHOLDER,
            "hash_val": file_md5(bundle / rel),
            "hash_type": "md5",
        }
        for rel in large
    ]
    if entries and any(p.name.startswith("large_files.") for p in small):
        raise BundleRefused(
            f"package_bundle: {bundle} already has a large_files file and {len(entries)} more file(s) over "
            f"{max_size_mb:g} MB; list them there yourself or make them smaller."
        )
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{name}_v{version}.zip"
    files = []
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        members = [(rel.as_posix(), (bundle / rel).read_bytes) for rel in small]
        if entries:
            text = _large_files_yaml(entries).encode()
            members.append(("large_files.yml", lambda text=text: text))
        for arc, read in sorted(members):
            info = zipfile.ZipInfo(f"{name}/{arc}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, read())
            files.append(arc)
    return BundlePackage(zip_path, name, version, files, entries, [p.as_posix() for p in excluded])


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--kebab-case``; the old ``--snake_case`` spellings are read too).

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="the bundle folder, e.g. bundles/unet_ldct")
    p.add_argument("--output-dir", dest="output_dir", default=str(REPO / "dist"), help="where the zip goes (default dist/)")
    p.add_argument("--max-size-mb", dest="max_size_mb", type=float, default=MAX_SIZE_MB,
                   help=f"files over this size go to large_files.yml (default {MAX_SIZE_MB:g} MB)")
    p.add_argument("--url-base", dest="url_base", default=None, help="download URL prefix of large files (default: a placeholder)")
    p.add_argument("--name", default=None, help="bundle name in the zoo (default: the folder's name)")
    return parse_kebab(p, argv)


def main(argv=None) -> int:
    """Package one bundle and print what went in, what was left out and what goes to ``large_files.yml``; exit status.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    args = parse_args(argv)
    try:
        pkg = package_bundle(args.bundle, args.output_dir, args.max_size_mb, args.url_base, args.name)
    except (BundleRefused, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = pkg.zip_path.stat().st_size / 1e6
    print(f"{pkg.zip_path} ({size:.2f} MB): {len(pkg.files)} files of {pkg.name} v{pkg.version}")
    if pkg.excluded:
        print(f"left out {len(pkg.excluded)} file(s): " + ", ".join(pkg.excluded[:10]) + (" ..." if len(pkg.excluded) > 10 else ""))
    for e in pkg.large_files:
        print(f"over {args.max_size_mb:g} MB, listed in large_files.yml: {e['path']} (md5 {e['hash_val']}); upload it "
              + ("to " + e["url"] if args.url_base else "and put its URL in large_files.yml"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
