"""Worker-process bodies for the race and crash tests (importable under spawn)."""

from __future__ import annotations

import contextlib
import os
import random

from results_flow import ResultsManager, SetBehavior
from tests.backends.models import Item


def skip_if_exists_writer(url: str, worker: int, ids: list[str]) -> list[str]:
    """Write every ID in a worker-specific order; return the IDs this worker won."""
    order = list(ids)
    random.Random(worker).shuffle(order)
    won = []
    with ResultsManager.from_url(url) as rm:
        for rid in order:
            if rm.set(
                rid,
                Item(index=int(rid.rsplit("/", 1)[1]), writer=f"w{worker}"),
                SetBehavior.SKIP_IF_EXISTS,
            ):
                won.append(rid)
    return won


def endless_writer(url: str, ready_path: str) -> None:
    """Overwrite and add records until killed; touch ``ready_path`` once writing is under way."""
    rm = ResultsManager.from_url(url)
    count = 0
    while True:
        rid = f"crash/{count % 50}" if count % 2 else f"crash/new/{count}"
        rm.set(rid, Item(index=count, writer="x" * (count % 4000)), SetBehavior.OVERWRITE)
        count += 1
        if count == 200:
            with open(ready_path, "w") as handle:
                handle.write(str(os.getpid()))


def clear_race_writer(url: str, worker: int, rounds: int) -> list[str]:
    """Write, read, list and delete while another process clears; return every error."""
    from results_flow.errors import ResultNotFoundError, ResultsFlowError

    errors = []
    with ResultsManager.from_url(url) as rm:
        for count in range(rounds):
            rid = f"w{worker}/g{count % 7}/deep/r{count % 13}"
            try:
                behavior = SetBehavior.OVERWRITE if count % 2 else SetBehavior.SKIP_IF_EXISTS
                rm.set(rid, Item(index=count, writer=f"w{worker}"), behavior)
                with contextlib.suppress(ResultNotFoundError):  # cleared meanwhile
                    rm.get(rid)
                rm.list_ids(f"w{worker}")
                rm.exists(rid)
                if count % 5 == 0:
                    rm.delete(rid)
            except (ResultsFlowError, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    return errors


def batched_writers(url: str, acks_path: str, threads: int) -> None:
    """``threads`` threads write new IDs until killed; each ID is appended to
    ``acks_path`` once its ``set`` returned (one ``write`` per line: whole lines)."""
    import threading

    rm = ResultsManager.from_url(url)
    acks = os.open(acks_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    start = os.getpid()

    def write(worker: int) -> None:
        count = 0
        while True:
            rid = f"kill/{start}/{worker}/{count}"
            rm.set(rid, Item(index=count, writer="x" * (count % 300)))
            os.write(acks, f"{rid}\n".encode())
            count += 1

    for worker in range(threads):
        threading.Thread(target=write, args=(worker,), daemon=True).start()
    threading.Event().wait()
