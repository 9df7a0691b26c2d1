"""``engine.files`` and ``ldct_scripts.files``: strict JSON, atomic writes, tolerant reads."""

import json
import math

import pytest

from ldct_scripts.studies import engine as sc


def test_write_json_is_strict_and_atomic_and_read_json_tolerates_half_files(tmp_path):
    import numpy as np

    path = sc.write_json(tmp_path / "a" / "b.json", {"x": (1, 2), "nan": math.nan, "np": np.float32(0.5), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": [1, 2], "nan": None, "np": 0.5, "p": str(tmp_path)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]  # no temporary file left
    (tmp_path / "half.json").write_text('{"x": ')
    assert sc.read_json(tmp_path / "half.json") is None and sc.read_json(tmp_path / "none.json") is None
    assert sc.fingerprint({"b": 1, "a": (1,)}) == sc.fingerprint({"a": [1], "b": 1})


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    from ldct_scripts.files import atomic_path, atomic_write

    target = atomic_write(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]
    assert atomic_write(target, b"new").read_bytes() == b"new"

