"""The study engine: what every study runner shares.

A study is a list of *units* of work (simulate one dataset, train one model, run one inference, make
one set of tables) grouped in *stages*. The engine gives each runner the same machinery, one job per module:

* :mod:`.runner`: :func:`run_logged` runs a command (``python -m ldct_sim simulate``, ``python -m monai.bundle
  run``) in a subprocess, appending its merged output to a log file and handing each line to a callback
  (progress parsing); a failure raises :class:`StudyError` with the log's tail. Children die with the study
  (Linux). :func:`bundle_command` builds ``python -m monai.bundle run --config_file ... --key value``.
* :mod:`.units`: :class:`UnitState`, resumability. A unit writes ``state/<stage>/<unit>.started.json`` (its
  settings) before it runs and ``.../<unit>.json`` (settings, upstream digests, outputs, seconds) when it has
  finished. A re-run skips units whose marker exists with the same settings, the same upstream digests and
  outputs still on disk; it refuses (with the differences named) to mix units made with other settings into
  one results folder; and it redoes a unit whose upstream changed or whose outputs are gone.
* :mod:`.lock`: :class:`ResultsLock`, one run per results folder at a time (``filelock``).
* :mod:`.progress`: :class:`StudyProgress`, one log line per unit (stage, unit, step, ETA for the unit and the
  whole run) and a tqdm bar; :func:`setup_logging`.
* :mod:`.tables`: :func:`write_table` (CSV + Markdown), :func:`markdown_table`, :func:`mean_std`.
* :mod:`.files`: atomic :func:`write_text`/:func:`write_json`, :func:`read_json`, digests, :func:`output_folder`.
* :mod:`.provenance`: :func:`study_provenance`, git commit, package versions, platform, command line.
* :mod:`.study`: :class:`Study`, the base of every runner: the folder's lock and log, ``config.json``, the stage
  loop, :meth:`~Study.unit` (run or skip one unit) and :meth:`~Study.require` (a finished prerequisite).

A bundle's own code is imported with :mod:`ldct_scripts.bundle_import`.
"""

from .errors import StudyError
from .files import file_digest, fingerprint, jsonable, output_folder, read_json, write_json, write_text
from .lock import ResultsLock
from .progress import StudyProgress, Unit, format_seconds, setup_logging
from .provenance import study_provenance
from .runner import bundle_command, run_logged, run_study, study_main
from .study import Study
from .tables import markdown_table, mean_std, write_table
from .units import UnitState

__all__ = [
    "Study",
    "StudyError",
    "fingerprint",
    "file_digest",
    "jsonable",
    "write_json",
    "read_json",
    "write_text",
    "run_logged",
    "bundle_command",
    "run_study",
    "study_main",
    "UnitState",
    "ResultsLock",
    "Unit",
    "StudyProgress",
    "format_seconds",
    "markdown_table",
    "write_table",
    "mean_std",
    "study_provenance",
    "setup_logging",
    "output_folder",
]
