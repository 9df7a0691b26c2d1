"""The resolution-transfer study of Zhang et al. (QIMS 2024) end to end, resumable, with tables, figures and a report.

One command simulates the six Table 1 systems from CT data or generated phantoms, trains one U-Net per
resolution through the U-Net bundle, tests every model on every resolution, fine-tunes the 625 µm
model on 5–30 % of the 62.5 µm training set, measures the noise texture (noise-only images and their
noise power spectra) and writes ``report.md``::

    python -m ldct_scripts.studies.resolution_transfer --results-dir results/rt_smoke --preset smoke        # ~1 min, CPU
    python -m ldct_scripts.studies.resolution_transfer --results-dir results/rt_small --preset small        # ~45 min, 2 CPU cores
    python -m ldct_scripts.studies.resolution_transfer --results-dir results/rt_paper --preset paper --device cuda:0
    python -m ldct_scripts.studies.resolution_transfer --results-dir results/rt_ct --preset small --source /data/ct
    python -m ldct_scripts.studies.resolution_transfer --results-dir results/rt_small --preset small --stages noise,report

Stages (``--stages``, default all, in this order; each writes under ``--results-dir``):

``data``
    one ``python -m ldct_sim simulate`` run for the resolutions not done yet, into ``data/``
    (``data/res<R>um/datalist.json``), split training/validation/test in the study's 2400:300:300
    proportions (by patient or phantom).
``train``
    the bundle's ``configs/train.json`` per resolution (``models/res<R>um/checkpoints/model.pt``).
``crosstest``
    the bundle's ``configs/inference.json`` with every model on every resolution's test set
    (``crosstest/pred/``), then PSNR against the labels (Table 3) and residual variance, NRMSE and SSIM
    against the self-test output (Figures 5 and 8), with the bundle's own metric functions.
``retrain``
    ``configs/train.json`` + ``configs/finetune.json``: the source model (625 µm) fine-tuned on
    5–30 % of the target (62.5 µm) training set with early stopping (``retrain/frac<P>pct/``), evaluated
    on the target test set (Figure 11).
``noise``
    noise-only images per resolution (Figure 12), their radially averaged noise power spectra
    (:mod:`ldct_sim.noise_power`) and maps of where the noise is (per-pixel SD over all images).
``report``
    ``report.md`` embedding every table and figure, with settings, seeds, versions and the seed's numbers.

Outputs: ``tables/*.csv`` + ``tables/*.md``, ``figures/*.png``, ``report.md``; logs under ``logs/``
(``logs/study.log`` and one log per unit); resumability markers under ``state/``. Re-running the same
command skips finished units, continues an interrupted one (training resumes from the bundle's own
latest checkpoint) and redoes units whose inputs changed or whose outputs are gone; a results folder whose
simulations or models were made with other settings is refused with the differences named (tables, figures
and the report are simply redone). One run at a time holds a results folder (``.lock``). The study only orchestrates: training and inference logic lives in
the bundle (``--bundle-root``), the metrics in the bundle's ``scripts/metrics.py``.

The package, by job: ``config`` (options, ``presets.json``, the seed's numbers in ``seed.json``), ``study`` (the
units and the commands they run), ``stages`` (what each stage derives from its units' files), ``analysis`` (pure
functions on arrays), ``tables``, ``figures``, ``report`` (the template ``report.md.in``).
"""

from .cli import main
from .config import ALL_RESOLUTIONS, PRESETS, SEED, STAGES, Config, build_parser, res_tag, resolve_config, stable_split
from .study import ResolutionTransferStudy

__all__ = ["ALL_RESOLUTIONS", "PRESETS", "SEED", "STAGES", "Config", "ResolutionTransferStudy", "build_parser", "main",
           "res_tag", "resolve_config", "stable_split"]
