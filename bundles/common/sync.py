"""Copy the code both bundles carry from ``bundles/common/`` into each bundle's ``scripts/``.

Each bundle must stand alone in the MONAI model zoo (its inference needs only MONAI, torch and its own
``scripts/``), so the modules both bundles use are committed in each bundle; this folder is their one
source. Every copy starts with one comment line naming its source, then the source byte for byte.

    python bundles/common/sync.py           # write the copies
    python bundles/common/sync.py --check   # exit 1, naming each copy that differs (or is missing)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMON = Path(__file__).resolve().parent
HEADER = "# Generated from bundles/common/{name} by `python bundles/common/sync.py`: edit it there, not here.\n"


def sources(common: Path = COMMON) -> list[Path]:
    """The shared modules: every ``*.py`` of ``common`` but this script."""
    return sorted(p for p in common.glob("*.py") if p.name != Path(__file__).name)


def bundles(common: Path = COMMON) -> list[Path]:
    """Every bundle beside ``common``: a folder of ``bundles/`` with ``configs/`` and ``scripts/``."""
    return sorted(p for p in common.parent.iterdir() if (p / "configs").is_dir() and (p / "scripts").is_dir())


def expected(source: Path) -> bytes:
    """The bytes of a copy of ``source``: the header line, then the source."""
    return HEADER.format(name=source.name).encode() + source.read_bytes()


def stale(common: Path = COMMON) -> list[Path]:
    """Every out-of-date copy: missing, different from its source, or generated from a source that is gone."""
    names = {s.name for s in sources(common)}
    out = []
    for bundle in bundles(common):
        for source in sources(common):
            copy = bundle / "scripts" / source.name
            if not copy.is_file() or copy.read_bytes() != expected(source):
                out.append(copy)
        for copy in sorted((bundle / "scripts").glob("*.py")):
            first = copy.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
            if first.startswith("# Generated from bundles/common/") and copy.name not in names:
                out.append(copy)
    return out


def sync(common: Path = COMMON) -> list[Path]:
    """Write every out-of-date copy (an orphaned copy is reported, not deleted); returns the copies written."""
    written = []
    for copy in stale(common):
        source = common / copy.name
        if source.is_file():
            copy.write_bytes(expected(source))
            written.append(copy)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 naming each copy that differs")
    parser.add_argument("--common", type=Path, default=COMMON, help="the common folder (default: this script's)")
    args = parser.parse_args(argv)
    common = args.common.resolve()
    if args.check:
        bad = stale(common)
        for copy in bad:
            source = common / copy.name
            why = "has no source any more" if not source.is_file() else ("is missing" if not copy.is_file() else "differs")
            print(f"{copy}: {why}; its source is {source}. Run `python bundles/common/sync.py`.", file=sys.stderr)
        return 1 if bad else 0
    for copy in sync(common):
        print(f"wrote {copy}")
    orphans = [c for c in stale(common) if not (common / c.name).is_file()]
    for copy in orphans:
        print(f"{copy}: generated from bundles/common/{copy.name}, which is gone; delete it by hand.", file=sys.stderr)
    return 1 if orphans else 0


if __name__ == "__main__":
    sys.exit(main())
