"""The object store (S3, GCS, Azure through obstore): one document per ID (``store``)
and the leases that stand in for locks (``leases``)."""

from results_flow.backends.object_store.store import ObjectStoreBackend

__all__ = ["ObjectStoreBackend"]
