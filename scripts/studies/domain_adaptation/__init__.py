"""The cross-domain study of Huang et al. (seed B: its Table 1, Figures 2 and 3), end to end and resumable.

Synthetic→real (S→R) and real→synthetic (R→S) on two simulated domains (``bundles/cpce_rfm_da``'s
``python -m scripts.domains``): for each direction, plain CPCE and CPCE + adaptive RFM alignment (and, with
``--methods``, the fixed-RFM ablation) trained by the cross-domain bundle's ``configs/train.json`` with the same
budget, the U-Net bundle's ``configs/train.json`` on the same source pairs as an extra column, then PSNR/SSIM
(mean ± SD) of every model on the target domain's test pairs through the cross-domain bundle's
``configs/evaluate.json``. ``--preset real`` puts a real domain in both directions (:mod:`.real`): S→R with the
shared AAPM–Mayo quarter-dose images as the unlabelled target, and R→S with one patient's real pairs as the labelled
source and simulated pairs of two other patients as the target and test. The bundles hold all training and metric logic; the study only
orchestrates, so every number can be reproduced with the bundle commands it logs::

    python -m ldct_scripts.studies.domain_adaptation --results-dir results/da_smoke --preset smoke
    python -m ldct_scripts.studies.domain_adaptation --results-dir results/da_small --preset small --lambda-adv 0.001 --lambda-align 0.001
    python -m ldct_scripts.studies.domain_adaptation --results-dir /tmp/da_real --preset real
    python -m ldct_scripts.studies.domain_adaptation --results-dir results/da_paper --preset paper --device cuda:0 --vgg-weights vgg19.pth

Stages (``--stages``, default all, in this order): ``data`` (both domains, ``data/``), ``train`` (one run per
direction and method, ``runs/<direction>_<method>``), ``evaluate`` (Table 1, ``tables/table1.{csv,md}``),
``figures`` (one test image per direction, every method, the seed's [40, 400] HU window with a zoomed ROI) and
``report`` (``report.md``: settings, versions, the table beside the seed's, a computed reading, figures).

Every finished unit leaves a marker under ``state/`` with its settings and the digests of the units it read. A
re-run skips finished units, continues an interrupted training (the bundle's own ``resume``), redoes units whose
inputs changed or whose outputs are gone, and refuses a folder whose data or models were made with other settings,
naming the differences (tables, figures and the report are simply redone). One run at a time holds a results
folder (``.lock``). Every preset size is also an option (``--n-pixels``, ``--n-train``, ``--max-epochs``, ...).

The package, by job: ``config`` (options, ``presets.json``, the seed's Table 1 in ``seed.json``), ``study`` (the units
and the commands they run), ``real`` (the real target's units), ``real_data`` (its NIfTI copies of the shared slices), ``stages`` (what evaluation and figures derive),
``analysis`` (pure functions: readings, table rows), ``figures``, ``report`` (the templates ``report.md.in`` and
``report_real.md.in`` with one ``report_real_direction.md.in`` per direction).
"""

from .cli import main
from .config import DIRECTIONS, METHODS, PRESETS, REAL_METHODS, SEED, STAGES, Config, build_parser, check_real, resolve_config
from .real import RealTargetStudy
from .study import DomainAdaptationStudy

__all__ = ["DIRECTIONS", "METHODS", "PRESETS", "REAL_METHODS", "SEED", "STAGES", "Config", "DomainAdaptationStudy",
           "RealTargetStudy", "build_parser", "check_real", "main", "resolve_config"]
