"""How a command's process ends (pipeline.process), in real processes and with real signals:
SIGTERM unwinds it (its lock released, exit 143); a DVC stage whose `dvc` is killed alone
stops itself. (The whole path with Ray and `dvc repro`: tests/dvc_stages/test_interrupt.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

COMMAND = textwrap.dedent("""
    import sys, time
    from pipeline.locks import output_lock
    from pipeline.process import run_command

    def main():
        with output_lock(sys.argv[1], "--out"):
            (open(sys.argv[1] + "/work.txt", "w")).write("started")
            print("running", flush=True)
            time.sleep(60)

    sys.exit(run_command(main))
""")


def _wait_for_file(path, timeout_s: float = 30) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _released(out) -> bool:
    """No holder: the lock file is gone (an interrupted command removes the lock it created)
    or empty."""
    lock = out / ".lock"
    return not lock.exists() or lock.read_text() == ""


def test_sigterm_unwinds_the_command_and_releases_its_output(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", COMMAND, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM: stopped; finished work is kept" in stderr
    assert "Traceback" not in stderr
    assert (out / "work.txt").read_text() == "started"  # kept
    assert _released(out)


def test_a_stage_stops_when_its_dvc_is_killed_alone(tmp_path):
    """The stage runs under a process named `dvc` (through a shell, as DVC starts it), with
    DVC_STAGE set; SIGKILL that process alone, and the stage stops itself within seconds."""
    out, log = tmp_path / "out", tmp_path / "stage.log"
    stage = f"{sys.executable} -c '{COMMAND}' {out} > {log} 2>&1; true"  # `; true`: no exec
    fake_dvc = subprocess.Popen(["bash", "-c", 'exec -a dvc bash -c "$0"', stage],
                                env={**os.environ, "DVC_STAGE": "search@x"},
                                start_new_session=True)
    try:
        _wait_for_file(out / "work.txt")
        (child,) = [p for p in psutil.Process(fake_dvc.pid).children(recursive=True)
                    if "python" in p.name()]
        assert psutil.Process(fake_dvc.pid).cmdline()[0] == "dvc"
        fake_dvc.kill()  # dvc alone: its stage is not in the signal's way
        fake_dvc.wait()
        t0 = time.time()
        _, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, "the stage ran on after its dvc was killed"
        assert time.time() - t0 < 5
    finally:
        for p in psutil.Process().children(recursive=True):
            p.kill()
    text = log.read_text()
    assert "the parent process" in text and "interrupted by SIGTERM" in text
    assert _released(out)
