"""File-store locks: one byte per ID of one lock file (issue 20 item 11), so the lock
folder stays two files (issue 8 item 12), distinct IDs never wait for each other, and
mutual exclusion is kept across threads and processes."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.backends.locks import id_hash
from results_flow.errors import LockTimeoutError
from tests.backends.models import Person

JOHN = Person(name="John", age=30)


def _same_stripe(result_id: str) -> str:
    """Another ID that shared ``result_id``'s lock file under the old striped scheme."""
    target = _old_stripe(result_id)
    return next(
        other for other in (f"other/{n}" for n in itertools.count()) if _old_stripe(other) == target
    )


def test_lock_files_are_bounded_however_many_ids(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    for n in range(3000):
        rid = f"runs/{n % 30}/r{n}"
        rm.set(rid, JOHN)
        with rm.backend.lock(rid):
            pass
    locks = list((tmp_path / ".results_flow" / "locks").rglob("*"))
    assert sorted(path.name for path in locks if path.is_file()) == ["compute.lock", "write.lock"]
    rm.clear()
    assert len(list((tmp_path / ".results_flow" / "locks").rglob("*.lock"))) == 2


def test_two_ids_that_shared_a_stripe_nest_in_one_thread(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    other = _same_stripe("a")
    with rm.backend.lock("a", timeout=5), rm.backend.lock(other, timeout=5):
        rm.set("a", JOHN)
        rm.set(other, JOHN)


def test_one_id_excludes_other_threads_and_a_former_stripe_mate_does_not(
    tmp_path: Path,
) -> None:
    rm = ResultsManager(tmp_path)
    other = _same_stripe("a")
    inside: list[str] = []
    with rm.backend.lock("a"):
        results: dict[str, object] = {}

        def take(rid: str) -> None:
            try:
                with rm.backend.lock(rid, timeout=0.5):
                    inside.append(rid)
                results[rid] = "held"
            except LockTimeoutError as exc:
                results[rid] = exc

        threads = [threading.Thread(target=take, args=(rid,)) for rid in ("a", other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert isinstance(results["a"], LockTimeoutError)
    assert results[other] == "held"
    assert inside == [other]


def test_a_waiting_thread_gets_the_id_when_it_is_released(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    order: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with rm.backend.lock("a"):
            first_in.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    with rm.backend.lock("a", timeout=30):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


@pytest.mark.parametrize("same_id", [True, False])
def test_another_process_waits_for_the_id_only(tmp_path: Path, same_id: bool) -> None:
    rm = ResultsManager(tmp_path)
    rid = "a" if same_id else _same_stripe("a")
    script = f"""
from results_flow import ResultsManager
from results_flow.errors import LockTimeoutError
try:
    with ResultsManager({str(tmp_path)!r}).backend.lock({rid!r}, timeout=0.3):
        print("acquired")
except LockTimeoutError:
    print("timeout")
"""
    with rm.backend.lock("a"):
        held = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
    assert held.stdout.strip() == ("timeout" if same_id else "acquired"), held.stderr
    free = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert free.stdout.strip() == "acquired", free.stderr


def test_a_killed_holder_frees_its_id(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"""
import pathlib, time
from results_flow import ResultsManager
with ResultsManager({str(tmp_path / "store")!r}).backend.lock("a"):
    pathlib.Path({str(ready)!r}).write_text("in")
    time.sleep(600)
"""
    holder = subprocess.Popen([sys.executable, "-c", script])
    try:
        while not ready.exists():
            assert holder.poll() is None
            time.sleep(0.05)
        rm = ResultsManager(tmp_path / "store")
        with pytest.raises(LockTimeoutError), rm.backend.lock("a", timeout=0.2):
            pass
    finally:
        holder.kill()
        holder.wait()
    with rm.backend.lock("a", timeout=30):
        pass


def test_lock_offsets_are_stable_across_processes() -> None:
    script = "from results_flow.backends.locks import id_hash; print(id_hash('x/y/z'))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) == id_hash("x/y/z")


# --- issue 20 item 11: distinct IDs never share a lock across processes --------------


def _old_stripe(result_id: str) -> int:
    """The stripe an ID locked before issue 20 (1024 striped lock files per folder)."""
    digest = hashlib.blake2b(result_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1024


def _crossed_ids() -> tuple[str, str, str, str]:
    """Four distinct IDs: A and D shared one old stripe, B and C another."""
    by_stripe: dict[int, list[str]] = {}
    for n in itertools.count():
        rid = f"nested/{n}"
        by_stripe.setdefault(_old_stripe(rid), []).append(rid)
        pairs = [ids for ids in by_stripe.values() if len(ids) >= 2]
        if len(pairs) >= 2:
            (a, d), (b, c) = pairs[0][:2], pairs[1][:2]
            return a, b, c, d
    raise AssertionError("unreachable")


_NESTED = """
import pathlib, sys, time
from results_flow import ResultsManager
from results_flow.errors import LockTimeoutError
from tests.backends.models import Person
store, outer, inner, mine, theirs = sys.argv[1:]
rm = ResultsManager(store)
with rm.lock(outer, timeout=60):
    pathlib.Path(mine).touch()
    while not pathlib.Path(theirs).exists():  # both hold their outer ID before either goes on
        time.sleep(0.01)
    try:
        with rm.lock(inner, timeout=10):
            rm.set(inner, Person(name=inner, age=1))
    except LockTimeoutError as exc:
        print("timeout", exc)
        raise SystemExit(1)
    rm.set(outer, Person(name=outer, age=0))
print("done")
"""


def test_nested_locks_on_four_distinct_ids_in_two_processes_complete(tmp_path: Path) -> None:
    """Issue 20 item 11: process 1 holds A and takes B, process 2 holds C and takes D; A/D
    and B/C shared a stripe file, so each waited for the other (an hour by default)."""
    a, b, c, d = _crossed_ids()
    assert len({a, b, c, d}) == 4 and _old_stripe(a) == _old_stripe(d) != _old_stripe(b)
    assert _old_stripe(b) == _old_stripe(c)
    store = tmp_path / "store"
    ResultsManager(store).close()
    marks = [str(tmp_path / "one"), str(tmp_path / "two")]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _NESTED, str(store), outer, inner, mine, theirs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for outer, inner, mine, theirs in ((a, b, *marks), (c, d, *reversed(marks)))
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [out.strip() for out, _ in outputs] == ["done", "done"], outputs
    assert ResultsManager(store).list_ids("nested") == sorted([a, b, c, d])
