"""Shared pytest configuration: ``@pytest.mark.slow`` tests run only with ``--runslow``; ``--schema PATH``
names the model zoo's metadata schema where ``../shared`` is not beside the clone."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption(
        "--schema",
        default=None,
        help="MONAI bundle metadata schema (meta_schema_20240725.json) for the model-zoo conformance tests; "
        "default ../shared/monai/meta_schema_20240725.json beside the clone",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
