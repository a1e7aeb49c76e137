"""Worker processes for the Prefect tests: ``python -m tests.prefect.workers COMMAND ...``.

Each reads its store from ``RESULTS_FLOW_STORE`` and its Prefect server from
``PREFECT_API_URL``, both set by the test that starts it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "ids":
        from results_flow.hashing import stable_key
        from results_flow.prefect import result_id_for
        from tests.prefect.tasks import Color, Item, Window, score, weigh

        print(
            json.dumps(
                [
                    result_id_for(score, 7),
                    result_id_for(score, 7, factor=3.5),
                    result_id_for(weigh, Item(id="a", weight=2.0), Color.BLUE),
                    stable_key({"w": Window(1, 2), "s": {3, 1, 2}, "p": Path("a/b")}),
                ]
            )
        )
    elif command == "resume":
        from tests.prefect.tasks import resume_flow

        resume_flow(int(args[0]))
    elif command == "resume-chunked":
        from tests.prefect.tasks import chunked_resume_flow

        chunked_resume_flow(int(args[0]), int(args[1]))
    elif command == "race":
        from tests.prefect.tasks import racer

        go, rounds = Path(args[0]), json.loads(args[1])
        while not go.exists():
            time.sleep(0.01)
        for store_url, calls_path, items in rounds:  # one race per store
            os.environ["RESULTS_FLOW_STORE"] = store_url
            os.environ["RF_TEST_CALLS"] = calls_path
            for item in items:
                racer.fn(item)
    elif command == "hold":
        from tests.prefect.tasks import racer

        racer.fn(int(args[0]))  # RF_TEST_SLEEP keeps it inside the lock until killed
    elif command == "plain":
        from prefect.blocks.core import Block

        from tests.prefect.tasks import plain_flow

        block = Block.load(args[0])
        print(json.dumps({"block": type(block).__name__, "results": plain_flow([1, 2, 3])}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # skip Prefect's exit hooks; the test only needs the output
