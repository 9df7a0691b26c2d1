"""The ``S`` fixture of the CPCE bundle's module tests: the bundle's ``scripts`` package, imported as ``scripts``."""

import pytest

from bundle_loading import bundle_scripts_as_scripts


@pytest.fixture
def S():
    return bundle_scripts_as_scripts("cpce_rfm_da")
