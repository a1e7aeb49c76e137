"""Striped lock files: a bounded lock folder, mutual exclusion kept (issue 8 item 12)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from results_flow import ResultsManager
from results_flow.backends.locks import STRIPES, stripe_of
from results_flow.errors import LockTimeoutError
from tests.backends.models import Person

JOHN = Person(name="John", age=30)


def _same_stripe(result_id: str) -> str:
    """Another ID on the same stripe as ``result_id``."""
    target = stripe_of(result_id)
    return next(
        other
        for other in (f"other/{n}" for n in range(100 * STRIPES))
        if stripe_of(other) == target
    )


def test_lock_files_are_bounded_however_many_ids(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    for n in range(3000):
        rid = f"runs/{n % 30}/r{n}"
        rm.set(rid, JOHN)
        with rm.backend.lock(rid):
            pass
    locks = list((tmp_path / ".results_flow" / "locks").rglob("*"))
    assert len([path for path in locks if path.is_file()]) <= 2 * STRIPES
    rm.clear()
    assert len(list((tmp_path / ".results_flow" / "locks").rglob("*.lock"))) <= 2 * STRIPES


def test_two_ids_on_one_stripe_nest_in_one_thread(tmp_path: Path) -> None:
    rm = ResultsManager(tmp_path)
    other = _same_stripe("a")
    with rm.backend.lock("a", timeout=5), rm.backend.lock(other, timeout=5):
        rm.set("a", JOHN)
        rm.set(other, JOHN)


def test_one_id_excludes_other_threads_and_another_id_on_its_stripe_does_not(
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
def test_another_process_waits_for_the_stripe(tmp_path: Path, same_id: bool) -> None:
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
    assert held.stdout.strip() == "timeout", held.stderr
    free = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert free.stdout.strip() == "acquired", free.stderr


def test_a_killed_holder_frees_its_stripe(tmp_path: Path) -> None:
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


def test_stripes_are_stable_across_processes() -> None:
    script = "from results_flow.backends.locks import stripe_of; print(stripe_of('x/y/z'))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) == stripe_of("x/y/z")
