"""A worker process for the lock-manager race: ``python -m tests.prefect.lock_manager_worker
STORE_URL BLOCK CALL_LOG GO_FILE N`` waits for GO_FILE, then runs a flow whose
Prefect-cached task (SERIALIZABLE, the store's lock manager, the saved ResultsStorage
block BLOCK) squares 0..N-1; each body run appends its input to CALL_LOG."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prefect import flow, task
from pydantic import BaseModel

from results_flow.prefect import RESULT_ID, PydanticSerializer, StoreLockManager


class Square(BaseModel):
    n: int
    square: int
    pid: int


def main(store_url: str, block: str, log: str, go: str, count: int) -> None:
    policy = RESULT_ID.configure(
        isolation_level="SERIALIZABLE", lock_manager=StoreLockManager(store_url)
    )

    @task(
        cache_policy=policy,
        result_storage=block,
        result_serializer=PydanticSerializer(),
        persist_result=True,
    )
    def square(n: int) -> Square:
        with open(log, "a") as calls:
            calls.write(f"{n}\n")
        time.sleep(0.3)  # long enough for the other worker to arrive and wait
        return Square(n=n, square=n * n, pid=os.getpid())

    @flow(name="lock-manager-race")
    def race() -> list[int]:
        return [square(n).square for n in range(count)]

    while not Path(go).exists():
        time.sleep(0.02)
    print(race())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
