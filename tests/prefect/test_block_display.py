"""The ResultsStorage block as the Prefect UI shows it (issue 22 item 5): its store URL
with only the password masked, read back from the server's block document."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from results_flow.prefect import ResultsStorage


def test_the_block_shows_its_store_with_only_the_password_masked() -> None:
    """Regression: the UI showed ``********`` for every store URL, password or none."""
    ResultsStorage(store_url="postgresql://ann:s3cret@127.0.0.1/results").save(
        "rf-display-pg", overwrite=True
    )
    plain = ResultsStorage(store_url="sqlite:///results_store/results.db")
    plain.save("rf-display-sqlite", overwrite=True)
    with get_client(sync_client=True) as client:
        pg = client.read_block_document_by_name(
            "rf-display-pg", "results-storage", include_secrets=False
        )
        sqlite = client.read_block_document_by_name(
            "rf-display-sqlite", "results-storage", include_secrets=False
        )
    assert pg.data["store"] == "postgresql://ann:***@127.0.0.1/results"
    assert "s3cret" not in repr(pg.data)
    assert sqlite.data["store"] == "sqlite:///results_store/results.db"
    loaded = ResultsStorage.load("rf-display-pg")
    assert loaded.store_url.get_secret_value() == "postgresql://ann:s3cret@127.0.0.1/results"
    assert (
        repr(loaded)
        == "ResultsStorage(store='postgresql://ann:***@127.0.0.1/results', prefix='prefect')"
    )
    loaded.store_url = "file:///tmp/rf-display"  # type: ignore[assignment]
    assert loaded.store == "file:///tmp/rf-display"
