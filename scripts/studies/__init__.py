"""The studies: one engine (:mod:`ldct_scripts.studies.engine`) and one folder per study, split by job."""
