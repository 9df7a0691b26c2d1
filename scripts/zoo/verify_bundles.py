"""Run the MONAI model zoo's checks on this repository's bundles and print a pass/fail table.

The checks follow model-zoo's ``ci/verify_bundle.py`` (full mode) and its unit tests, in their order,
and call MONAI's own functions for them (nothing of the schema or the export is re-implemented):

=====================  ==================================================================================
``files``              ``configs/metadata.json`` and ``LICENSE`` exist (``models/model.pt``,
                       ``configs/inference.json`` and ``docs/README.md`` are reported when missing)
``version``            ``version`` in the metadata, and a ``changelog`` that holds it
``metadata``           ``monai.bundle.verify_metadata`` against the schema file (``--schema``)
``net_in_out``         ``monai.bundle.verify_net_in_out`` of ``network_def`` (input ``image``, output
                       ``pred``), then: ``pred`` keeps the image's batch and spatial size (a denoiser)
``checkpoint``         ``models/model.pt`` loads with ``weights_only=True`` on this machine, holds CPU
                       tensors only and is under the zoo's 25 MB limit for committed files
``torchscript``        ``monai.bundle.ckpt_export`` to TorchScript; it reloads with ``metadata.json`` and
                       ``inference.json`` inside (what MONAI Deploy reads) and gives the checkpoint's
                       output on a batch of 2 (rtol 1e-5, atol 1e-5)
``properties:<wf>``    ``ConfigWorkflow(...).initialize()`` then ``check_properties() == []`` for each of
                       ``inference``, ``train``, ``evaluate`` and ``finetune`` the bundle has
=====================  ==================================================================================

``check_properties`` needs initialised workflows, which read data: as the zoo's unit tests do, each
workflow gets a tiny generated dataset (32 × 32 float32 NIfTI slices in cm⁻¹ with the datalists both
bundles read) and a temporary ``output_dir``; ``use_perceptual`` is switched off where present (VGG
weights are never downloaded). A config without ``bundle_root`` is an overlay and is merged on
``train.json``, as the bundles' docs run it (``"['configs/train.json','configs/evaluate.json']"``).
``multi_gpu_train.json`` needs ``torch.distributed`` and is not checked here.

Usage::

    python -m ldct_scripts.zoo.verify_bundles                              # every bundle under bundles/
    python -m ldct_scripts.zoo.verify_bundles bundles/unet_ldct --schema /path/meta_schema_20240725.json
    python -m ldct_scripts.zoo.verify_bundles --checks files,version,metadata     # the quick ones
    python -m ldct_scripts.zoo.verify_bundles --json report.json --workdir /tmp/verify   # keep exports, logs

The schema defaults to ``../shared/monai/meta_schema_20240725.json`` beside the clone when it exists.
Exit status: 0 when every check passed, 1 when one failed, 2 on a usage error (for example no schema).
Each bundle runs in a fresh interpreter when several are given, because every bundle names its
package ``scripts``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ldct_scripts import BUNDLES_DIR, REPO
from ldct_scripts.bundle_import import bundle_scripts_on_path
from ldct_scripts.zoo.checks import (  # noqa: F401 - file_md5 and make_tiny_dataset are this module's API too
    CHECK_FUNCTIONS,
    SCHEMA_NAME,
    WORKFLOWS,
    CheckFailed,
    Skipped,
    check_properties,
    file_md5,
    make_tiny_dataset,
)

DEFAULT_SCHEMA = REPO.parent / "shared" / "monai" / SCHEMA_NAME

CHECKS = ("files", "version", "metadata", "net_in_out", "checkpoint", "torchscript", "properties")

logger = logging.getLogger("verify_bundles")

__all__ = [
    "CHECKS",
    "CheckFailed",
    "Result",
    "Skipped",
    "bundle_scripts_on_path",
    "file_md5",
    "find_bundles",
    "make_tiny_dataset",
    "resolve_schema",
    "verify_bundle",
    "main",
]


@dataclass
class Result:
    """One row of the table: ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``."""

    bundle: str
    check: str
    status: str
    detail: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ helpers
def find_bundles(paths: list[str] | None = None) -> list[Path]:
    """The bundle folders named in ``paths`` (folders or names under ``bundles/``), or all of ``bundles/``.

    Args:
        paths: bundle folders or names under ``bundles/``; ``None`` or empty: all.
    """
    if not paths:
        found = sorted(p for p in BUNDLES_DIR.iterdir() if (p / "configs").is_dir())
        if not found:
            raise FileNotFoundError(f"verify_bundles: no bundle (a folder with configs/) under {BUNDLES_DIR}.")
        return found
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_dir() and (BUNDLES_DIR / p).is_dir():
            path = BUNDLES_DIR / p
        if not path.is_dir():
            raise FileNotFoundError(f"verify_bundles: bundle {p!r} is not a folder (nor a name under {BUNDLES_DIR}).")
        out.append(path.resolve())
    return out


def resolve_schema(schema: str | None, download: bool = False) -> Path | None:
    """The schema file to validate against; ``None`` means: let ``verify_metadata`` download it.

    Args:
        schema: ``--schema``, or ``None``.
        download: ``--download-schema``: without a file, let MONAI download it.

    Raises:
        FileNotFoundError: ``schema`` given but absent, or none given, no default copy and no ``download``.
    """
    if schema:
        path = Path(schema).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"verify_bundles: `--schema` {schema!r} is not a file.")
        return path.resolve()
    if DEFAULT_SCHEMA.is_file():
        return DEFAULT_SCHEMA
    if download:
        return None
    raise FileNotFoundError(
        f"verify_bundles: no metadata schema at the default {DEFAULT_SCHEMA}. Pass `--schema PATH` (a copy of "
        f"{SCHEMA_NAME}, the schema the bundles' metadata names), or `--download-schema` to let "
        "monai.bundle.verify_metadata download it from the URL in configs/metadata.json (needs the internet), "
        "or leave the check out with `--checks`."
    )


def _quiet_logs() -> None:
    """MONAI logs every call's arguments at INFO and bundles' logging.conf raise the root level: lower both."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("monai", "ignite", "torch"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _run_one(bundle: Path, check: str, fn, quiet: bool = True, **kwargs) -> Result:
    if quiet:
        _quiet_logs()
    t0 = time.perf_counter()
    try:
        detail, status = fn(bundle, **kwargs), "pass"
    except Skipped as e:
        detail, status = str(e), "skip"
    except CheckFailed as e:
        detail, status = str(e), "fail"
    except Exception as e:  # any other error of MONAI's checks is a failure of this check, not of the run
        logger.debug("%s %s:\n%s", bundle.name, check, traceback.format_exc())
        detail, status = f"{type(e).__name__}: {e}", "fail"
    result = Result(bundle.name, check, status, " ".join(str(detail).split()), round(time.perf_counter() - t0, 2))
    logger.info("%s %s: %s (%.1f s)", result.bundle, result.check, result.status.upper(), result.seconds)
    return result


def verify_bundle(
    bundle: str | os.PathLike,
    schema: Path | None = None,
    checks: tuple[str, ...] = CHECKS,
    workdir: str | os.PathLike | None = None,
    device: str | None = None,
    quiet: bool = True,
) -> list[Result]:
    """Run ``checks`` on one bundle in this interpreter; returns one ``Result`` per check (and workflow).

    Args:
        bundle: the bundle folder.
        schema: the metadata schema file; ``None`` lets ``verify_metadata`` download the URL it names.
        checks: names from ``CHECKS``.
        workdir: where exports, logs and the tiny dataset go; default a temporary folder, removed after.
        device: device of ``verify_net_in_out`` (default: MONAI's, CUDA when available).
        quiet: keep MONAI's INFO logs out of the output.
    """
    bundle = Path(bundle).resolve()
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"verify_bundle: unknown check(s) {unknown}; expected some of {CHECKS}.")
    levels = {n: logging.getLogger(n).level for n in ["", *logging.root.manager.loggerDict]}
    with contextlib.ExitStack() as stack:
        if quiet:  # put the logging levels back afterwards (this may run inside another program)
            stack.callback(lambda: [logging.getLogger(n).setLevel(v) for n, v in levels.items()])
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"verify_{bundle.name}_"))
        work = Path(workdir) / bundle.name
        work.mkdir(parents=True, exist_ok=True)
        stack.enter_context(bundle_scripts_on_path(bundle))
        importlib.import_module("monai.bundle")  # imported up front, so that no check's time includes it

        results = []
        for check in (c for c in CHECKS if c in checks):
            if check == "properties":
                for workflow, kind in WORKFLOWS:
                    if (bundle / "configs" / f"{workflow}.json").is_file():
                        results.append(_run_one(bundle, f"properties:{workflow}", check_properties, quiet,
                                                workflow=workflow, kind=kind, workdir=work))
            else:
                results.append(_run_one(bundle, check, CHECK_FUNCTIONS[check], quiet, schema=schema, workdir=work, device=device))
    return results


def format_table(results: list[Result]) -> str:
    """A plain-text table: bundle, check, PASS/FAIL/SKIP, seconds, detail.

    Args:
        results: the checks' results.
    """
    rows = [("bundle", "check", "result", "s", "detail")]
    rows += [(r.bundle, r.check, r.status.upper(), f"{r.seconds:.1f}", r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    n_fail = sum(r.status == "fail" for r in results)
    n_pass = sum(r.status == "pass" for r in results)
    lines.append(f"\n{n_pass} passed, {n_fail} failed, {len(results) - n_pass - n_fail} skipped")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="*", help="bundle folders or names under bundles/ (default: all)")
    p.add_argument("--schema", default=None, help=f"metadata schema file (default {DEFAULT_SCHEMA} when it exists)")
    p.add_argument("--download-schema", action="store_true",
                   help="without a schema file, let verify_metadata download the URL the metadata names")
    p.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--device", default=None, help="device of verify_net_in_out (default: cuda:0 if available)")
    p.add_argument("--workdir", default=None, help="keep exports, logs and the tiny dataset here (default: temporary)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--verbose", action="store_true", help="show MONAI's logs and tracebacks")
    p.add_argument("--no-table", action="store_true", help=argparse.SUPPRESS)  # children of a multi-bundle run
    return p.parse_args(argv)


def _child(bundle: Path, args: argparse.Namespace, json_path: Path) -> list[Result]:
    """Verify one bundle in a fresh interpreter (each bundle names its package ``scripts``)."""
    cmd = [sys.executable, "-m", "ldct_scripts.zoo.verify_bundles", str(bundle), "--checks", args.checks,
           "--json", str(json_path), "--no-table"]
    for flag in ("schema", "device", "workdir"):
        if getattr(args, flag):
            cmd += [f"--{flag}", str(getattr(args, flag))]
    cmd += ["--download-schema"] * args.download_schema + ["--verbose"] * args.verbose
    r = subprocess.run(cmd, check=False)
    if json_path.is_file():
        return [Result(**d) for d in json.loads(json_path.read_text())["results"]]
    return [Result(bundle.name, "run", "fail", f"the verifier exited with status {r.returncode} and no results")]


def main(argv=None) -> int:
    """Verify the bundles (each in a fresh interpreter when several), print the table; exit status 0, 1 or 2.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not logger.handlers:  # one line per check on stderr, whatever the bundles' logging.conf say
        progress = logging.StreamHandler(sys.stderr)
        progress.setFormatter(logging.Formatter("verify_bundles: %(message)s"))
        logger.addHandler(progress)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    checks = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    unknown = sorted(set(checks) - set(CHECKS))
    try:
        if unknown:
            raise ValueError(f"verify_bundles: unknown check(s) {unknown}; expected some of {list(CHECKS)}.")
        bundles = find_bundles(args.bundles)
        schema = resolve_schema(args.schema, args.download_schema) if "metadata" in checks else None
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(bundles) == 1:
        results = verify_bundle(bundles[0], schema=schema, checks=checks, workdir=args.workdir, device=args.device,
                                quiet=not args.verbose)
    else:
        results = []
        with tempfile.TemporaryDirectory(prefix="verify_bundles_") as tmp:
            for b in bundles:
                results += _child(b, args, Path(tmp) / f"{b.name}.json")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": [asdict(r) for r in results]}, indent=1), encoding="utf-8")
    if not args.no_table:
        print(format_table(results))
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
