"""``engine.units``: resumability markers skip, refuse and redo units."""

import pytest

from ldct_scripts.studies import engine as sc


def test_unit_state_skips_refuses_and_redoes(tmp_path):
    out = tmp_path / "model.pt"
    st = sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "abc"})
    assert st.status() == ("todo", None)
    st.start()
    assert st.status() == ("todo", None)  # killed while running: only the started marker exists, so it runs again
    out.write_bytes(b"w")
    marker = st.finish({"files": [str(out)], "model": str(out)}, 1.5)
    assert st.status() == ("done", marker) and not st.started_path.exists()
    again = sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "abc"})
    assert again.finish({"files": [str(out)], "model": str(out)}, 9.0)["digest"] == marker["digest"]  # times not hashed
    with pytest.raises(sc.StudyError, match=r"other settings \(iterations: 4 -> 8\)"):
        sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 8}, {"data": "abc"}).status()
    assert sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "new"}).status()[0] == "stale"
    # cheap derived units (tables, figures) are redone rather than refused when their settings change
    assert sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 8}, {"data": "abc"}, strict=False).status()[0] == "stale"
    out.unlink()
    assert st.status()[0] == "stale"  # an output is gone
