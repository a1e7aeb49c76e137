"""examples/parallel_resume.py, run as a user runs it: compute, reuse, and resume after
an interrupt (Ctrl-C) or a SIGKILL, counted through the store and the printed summary.

The runs talk to the session's Prefect harness server (``PREFECT_API_URL``) instead of
starting a temporary server of their own (about ten seconds each).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.parallel_resume import Proof, cli_command, proof_task
from results_flow import ResultsManager

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "parallel_resume.py"
SUMMARY = re.compile(r"(\d+) results: (\d+) computed, (\d+) reused from the store")
# Safety nets only, far above what an idle machine needs: every wait below ends on an
# event (results stored, the process exited), so a loaded machine only makes it slower.
PATIENCE_SECONDS = 600


def example_env() -> dict[str, str]:
    """The test process's environment, pointed at the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise RuntimeError("use the prefect_harness fixture: no PREFECT_API_URL is set")
    env = {k: v for k, v in os.environ.items() if k != "RESULTS_FLOW_STORE"}
    env.update(PREFECT_API_URL=api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def start(
    script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start an example in a session of its own (so a kill reaches its whole group)."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env or example_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Python ignores SIGINT in children of a shell that does; a user's Ctrl-C does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(
    process: subprocess.Popen[str], timeout: float = PATIENCE_SECONDS
) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{process.args!r} did not finish in {timeout} s\n{out}\n{err}")
    return process.returncode, out, err


def run_to_end(script: Path, *args: str, cwd: Path) -> tuple[int, int, int]:
    """Run an example to completion; (items, computed, reused) from its summary."""
    code, out, err = finish(start(script, *args, cwd=cwd))
    match = SUMMARY.search(out)
    if code != 0 or match is None:
        pytest.fail(f"exit {code}, no summary\nstdout:\n{out}\nstderr:\n{err[-4000:]}")
    items, computed, reused = (int(g) for g in match.groups())
    return items, computed, reused


def stored(url: str, items: int, difficulty: int) -> int:
    task = proof_task(url)
    with ResultsManager.from_url(url) as rm:
        return len(rm.exists_many([task.result_id(i, difficulty) for i in range(items)]))


def wait_until_stored(
    process: subprocess.Popen[str], url: str, items: int, difficulty: int, at_least: int
) -> None:
    """Wait until ``at_least`` results are stored; fail at once if the run ended first."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while stored(url, items, difficulty) < at_least:
        if process.poll() is not None:
            code, out, err = finish(process)
            pytest.fail(
                f"the run ended (exit {code}) before {at_least} results were stored\n"
                f"{out}\n{err[-4000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {at_least} results stored after {PATIENCE_SECONDS} s")
        time.sleep(0.1)


@pytest.mark.usefixtures("prefect_harness")
def test_first_run_computes_every_item_and_a_second_reuses_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'proofs.db'}"
    args = ("--items", "60", "--difficulty", "8", "--store", url, "--no-progress")
    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (60, 60, 0)
    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (60, 0, 60)
    with ResultsManager.from_url(url) as rm:
        ids = rm.list_ids("proofs/d8")
        assert ids == [f"proofs/d8/item-{i:05d}" for i in range(60)]
        proof = rm.get("proofs/d8/item-00042", Proof)
        record = rm.record("proofs/d8/item-00042")
    assert proof.item == 42
    assert proof.sha256.startswith("00")  # 8 zero bits
    assert record.metadata["task_name"] == "find-proof"
    assert record.metadata["flow_name"] == "parallel-resume"


@pytest.mark.usefixtures("prefect_harness")
def test_default_store_is_results_store_in_the_working_directory(tmp_path: Path) -> None:
    args = ("--items", "5", "--difficulty", "4", "--no-progress")
    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (5, 5, 0)
    with ResultsManager.from_url(f"sqlite:///{tmp_path / 'results_store' / 'results.db'}") as rm:
        assert len(rm.list_ids("proofs/d4")) == 5


@pytest.mark.usefixtures("prefect_harness")
def test_interrupted_and_killed_runs_resume_computing_only_what_is_missing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'proofs.db'}"
    items, difficulty = 400, 12
    args = ("--items", str(items), "--difficulty", str(difficulty), "--store", url)

    # Ctrl-C: the run stops, says how much is stored, and exits 130.
    first = start(SCRIPT, *args, cwd=tmp_path)
    wait_until_stored(first, url, items, difficulty, at_least=30)
    first.send_signal(signal.SIGINT)
    code, out, err = finish(first)
    after_interrupt = stored(url, items, difficulty)
    assert code == 130, err[-4000:]
    assert f"interrupted: {after_interrupt} of {items} results are stored" in out
    assert after_interrupt < items

    # SIGKILL: no chance to clean up; what it stored is kept, nothing half-written.
    second = start(SCRIPT, *args, cwd=tmp_path)
    wait_until_stored(second, url, items, difficulty, at_least=after_interrupt + 30)
    os.killpg(second.pid, signal.SIGKILL)
    finish(second)
    after_kill = stored(url, items, difficulty)
    assert after_interrupt + 30 <= after_kill < items

    assert run_to_end(SCRIPT, *args, cwd=tmp_path) == (items, items - after_kill, after_kill)
    assert stored(url, items, difficulty) == items


def test_ctrl_c_in_a_terminal_stops_the_run_and_prefects_temporary_server_promptly(
    tmp_path: Path,
) -> None:
    """Regression: a terminal's Ctrl-C reaches the whole process group, so it also stops
    the temporary server Prefect starts without PREFECT_API_URL; Prefect then retried
    sending it every pending event (7 s each) for minutes before the example exited."""
    url = f"sqlite:///{tmp_path / 'proofs.db'}"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "RESULTS_FLOW_STORE")
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    items, difficulty = 1000, 12
    args = ("--items", str(items), "--difficulty", str(difficulty), "--store", url, "--no-progress")
    run = start(SCRIPT, *args, cwd=tmp_path, env=env)
    wait_until_stored(run, url, items, difficulty, at_least=20)
    os.killpg(run.pid, signal.SIGINT)  # what the terminal does
    interrupted = time.monotonic()
    code, out, err = finish(run)
    # The regression took minutes; the run gives Prefect 5 s, then exits. A minute
    # tells the two apart even on a loaded machine.
    assert time.monotonic() - interrupted < 60, err[-4000:]
    assert code == 130, err[-4000:]
    assert re.search(rf"interrupted: \d+ of {items} results are stored", out), out
    assert group_ended(run.pid, within=60), "Prefect's temporary server outlived the run"


def group_ended(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.25)
    os.killpg(pgid, signal.SIGKILL)
    return False


def test_on_prefects_temporary_server_the_output_ends_with_the_summary(tmp_path: Path) -> None:
    """Regression: without PREFECT_API_URL, the temporary server's shutdown printed a
    25-line SQLAlchemy CancelledError traceback after the summary (issue 13)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "RESULTS_FLOW_STORE")
    }
    home = tmp_path / "prefect-home"
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    args = ("--items", "200", "--difficulty", "8", "--no-progress")
    code, out, err = finish(start(SCRIPT, *args, cwd=tmp_path, env=env))
    assert code == 0, err[-4000:]
    assert "Traceback" not in out + err, err[-4000:]
    assert "Error" not in out + err, err[-4000:]
    assert out.rstrip().splitlines()[-3].startswith("200 results: 200 computed"), out
    assert (home / "temporary-server.log").exists()


def venv_bin() -> Path:
    return Path(sys.executable).absolute().parent


def path_without_venv() -> str:
    return os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).absolute() != venv_bin()
    )


@pytest.mark.usefixtures("prefect_harness")
def test_the_printed_look_command_runs_as_printed_from_the_project_folder(tmp_path: Path) -> None:
    """``make demo`` runs ``.venv/bin/python`` from the project folder without activating
    the venv: the summary's ``look:`` line must work pasted into a shell there."""
    project = venv_bin().parent.parent  # the folder that holds the venv: make demo's cwd
    url = f"sqlite:///{tmp_path / 'proofs.db'}"
    env = example_env()
    env["PATH"] = path_without_venv()
    args = ("--items", "5", "--difficulty", "4", "--store", url, "--no-progress")
    code, out, err = finish(start(SCRIPT, *args, cwd=project, env=env))
    assert code == 0, err[-4000:]
    look = re.search(r"^look:  (.+)$", out, re.MULTILINE)
    assert look, out
    if venv_bin().parent.name == ".venv":
        assert look[1].startswith(".venv/bin/results-flow ls proofs/d4 --store "), look[1]
    listed = subprocess.run(
        ["bash", "-c", look[1]], cwd=project, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"proofs/d4/item-{i:05d}" for i in range(5)]


def test_the_cli_is_named_plainly_when_path_finds_the_venvs_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(venv_bin()))
    assert cli_command() == "results-flow"
    monkeypatch.setenv("PATH", path_without_venv())
    monkeypatch.chdir(venv_bin().parent.parent)
    assert cli_command() == str((venv_bin() / "results-flow").relative_to(Path.cwd()))
    monkeypatch.chdir(tmp_path)
    assert cli_command() == str(venv_bin() / "results-flow")
