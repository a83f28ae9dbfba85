"""One writer per output (pipeline.locks): a second writer is refused naming the holder, a
lock whose holder died is taken over with a message, a failed command leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pipeline.locks import OutputLocked, lock_path, output_lock

HOLD = textwrap.dedent("""
    import sys, time
    from pipeline.locks import output_lock
    with output_lock(sys.argv[1], "--out"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / "result.txt").write_text("the holder's work")
        with pytest.raises(OutputLocked, match=rf"(?s)--out {out} is being written by another "
                                               rf"process \(pid {holder.pid} on .*-c .*\)"
                                               ".*Nothing was changed"):
            with output_lock(out, "--out"):
                raise AssertionError("entered a held lock")
        assert sorted(p.name for p in out.iterdir()) == [".lock", "result.txt"]
        assert json.loads((out / ".lock").read_text())["pid"] == holder.pid  # still its own
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (no clean release): the next writer takes the lock over
    messages = []
    with output_lock(out, "--out", messages.append):
        pass
    assert messages and f"took over the lock left by pid {holder.pid}" in messages[0]
    assert (out / ".lock").read_text() == ""  # a clean release leaves it empty


def test_a_failed_command_leaves_no_trace(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with output_lock(out, "--out"):
            raise RuntimeError("bad input found after the lock was taken")
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "old.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with output_lock(existing, "--out"):
            raise RuntimeError
    assert [p.name for p in existing.iterdir()] == ["old.json"]


def test_a_file_output_is_locked_beside_it(tmp_path):
    out = tmp_path / "results" / "x.json"
    assert lock_path(out) == tmp_path / "results" / ".x.json.lock"
    with output_lock(out, "--out") as path:
        assert path == lock_path(out) and json.loads(path.read_text())["command"]
        out.write_text("{}")
    assert path.read_text() == ""
