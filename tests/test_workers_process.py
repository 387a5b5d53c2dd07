"""The command workers (exec, shell, python, mage) run real subprocesses through a real Runner.

Every test runs on both dialects: what a user relies on is the run row (outcome, error
class, captured output) and the job's state, as the database recorded them.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

import flywheel
from flywheel_plugins.workers.exec import ExecArgs, ExecWorker
from flywheel_plugins.workers.mage import MageArgs, MageWorker
from flywheel_plugins.workers.python import PythonArgs, PythonWorker
from flywheel_plugins.workers.shell import ShellArgs, ShellWorker
from tests.helpers import run_job, wait_for
from tests.helpers import run_output as output


@pytest.fixture
def workers(registry: flywheel.Registry) -> flywheel.Registry:
    for worker in (ExecWorker(), ShellWorker(), PythonWorker(), MageWorker()):
        registry.register(worker)
    return registry


def test_exit_zero_succeeds_with_both_streams_captured(db, client, make_runner, workers):
    job, runs = run_job(db, client, make_runner, ShellArgs(inline="echo out; echo err >&2"))
    assert job.state == "succeeded"
    out = output(runs[0])
    assert (out["exit_code"], out["stdout"], out["stderr"], out["truncated"]) == (0, "out\n", "err\n", False)
    assert out["duration_ms"] >= 0


def test_non_zero_exit_is_retried_and_keeps_the_output_of_every_failed_run(db, client, make_runner, workers):
    job, runs = run_job(db, client, make_runner, ShellArgs(inline="echo trying; echo broken >&2; exit 3"),
                        max_attempts=2)
    assert job.state == "discarded"
    assert [(r.outcome, r.error_class) for r in runs] == [("error", "transient"), ("error", "transient")]
    assert "exited with code 3: broken" in runs[0].error
    assert output(runs[0])["exit_code"] == 3
    assert output(runs[1])["stdout"] == "trying\n"


def test_exit_code_listed_as_permanent_discards_at_once(db, client, make_runner, workers):
    job, runs = run_job(db, client, make_runner, ShellArgs(inline="exit 3", permanent_exit_codes=[3]))
    assert job.state == "discarded"
    assert [(r.outcome, r.error_class) for r in runs] == [("error", "permanent")]
    assert output(runs[0])["exit_code"] == 3


def test_worker_level_permanent_exit_codes(db, client, make_runner, registry):
    registry.register(ExecWorker(permanent_exit_codes=[4]))
    job, runs = run_job(db, client, make_runner, ExecArgs(command="sh", args=["-c", "exit 4"]))
    assert (job.state, runs[0].error_class) == ("discarded", "permanent")


def test_timeout_kills_the_whole_process_group(db, client, make_runner, workers, tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; echo started; sleep 60"
    job, runs = run_job(db, client, make_runner, ShellArgs(inline=script, timeout_seconds=1), max_attempts=1)
    assert (job.state, runs[0].outcome, runs[0].error_class) == ("discarded", "timeout", "timeout")
    assert output(runs[0])["stdout"] == "started\n"
    assert output(runs[0])["exit_code"] == -1
    child, shell = (int(line) for line in pids.read_text().split())
    for pid in (child, shell):
        wait_for(lambda pid=pid: not _running(pid), timeout=10, what=f"process {pid} to be gone")


def test_timeout_from_insert_options_stops_the_command_too(db, client, make_runner, workers):
    job, runs = run_job(db, client, make_runner, ShellArgs(inline="sleep 30"), timeout=1, max_attempts=1)
    assert (runs[0].outcome, runs[0].error_class) == ("timeout", "timeout")
    assert output(runs[0])["signal"] is not None  # stopped, not waited for


def test_ten_megabytes_of_output_is_bounded_marked_and_never_blocks(db, client, make_runner, workers):
    script = "head -c 10485760 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2; echo END"
    job, runs = run_job(db, client, make_runner, ShellArgs(inline=script, timeout_seconds=60))
    assert job.state == "succeeded"
    out = output(runs[0])
    assert out["truncated"] is True
    assert (out["stdout_bytes"], out["stderr_bytes"]) == (10485760 + 4, 3000000)
    assert len(out["stdout"].encode()) < 64 * 1024 + 200
    assert "[flywheel: output truncated:" in out["stdout"] and "of 10485764 bytes omitted]" in out["stdout"]
    assert out["stdout"].startswith("aaaa") and out["stdout"].endswith("aEND\n")  # first and last bytes kept
    assert "of 3000000 bytes omitted]" in out["stderr"]


def test_the_environment_is_the_allowlist_plus_the_jobs_env(db, client, make_runner, registry, monkeypatch):
    monkeypatch.setenv("FW_VISIBLE", "yes")
    monkeypatch.setenv("FW_SECRET", "hunter2")
    registry.register(ShellWorker(env_allowlist=["PATH", "FW_VISIBLE"]))
    script = 'echo "visible=$FW_VISIBLE secret=${FW_SECRET:-unset} own=$OWN"; env'
    job, runs = run_job(db, client, make_runner, ShellArgs(inline=script, env={"OWN": "mine"}))
    stdout = output(runs[0])["stdout"]
    assert stdout.splitlines()[0] == "visible=yes secret=unset own=mine"
    assert "hunter2" not in stdout


def test_default_allowlist_hides_the_daemons_variables(db, client, make_runner, workers, monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    job, runs = run_job(db, client, make_runner, ExecArgs(command="env"))
    names = {line.split("=", 1)[0] for line in output(runs[0])["stdout"].splitlines()}
    assert "DATABASE_PASSWORD" not in names
    assert "PATH" in names


def test_inline_shell_gets_args_as_positional_parameters(db, client, make_runner, workers):
    args = ShellArgs(inline='echo "$0|$1|$2|$#"', args=["one two", "three"])
    job, runs = run_job(db, client, make_runner, args)
    assert output(runs[0])["stdout"] == "sh|one two|three|2\n"


def test_script_file_runs_with_args_dir_and_stdin(db, client, make_runner, workers, tmp_path):
    (tmp_path / "job.sh").write_text('read line; echo "$1 $line $(pwd)"\n')  # no exec bit needed
    args = ShellArgs(script="job.sh", args=["hello"], dir=str(tmp_path), stdin="from-stdin\n")
    job, runs = run_job(db, client, make_runner, args)
    assert job.state == "succeeded"
    assert output(runs[0])["stdout"] == f"hello from-stdin {tmp_path}\n"


def test_exec_never_goes_through_a_shell(db, client, make_runner, workers, tmp_path):
    marker = tmp_path / "pwned"
    job, runs = run_job(db, client, make_runner, ExecArgs(command="echo", args=[f"a; touch {marker}", "$HOME"]))
    assert output(runs[0])["stdout"] == f"a; touch {marker} $HOME\n"
    assert not marker.exists()


@pytest.mark.parametrize(("args", "field"), [
    (ExecArgs(command="no-such-program-flywheel"), "failed to start"),
    (ExecArgs(command=""), "command is required"),
    (ShellArgs(script="missing.sh"), "'missing.sh' is not a file"),
    (ShellArgs(script="a.sh", inline="echo"), "both set"),
    (ShellArgs(), "script or inline is required"),
    (ShellArgs(inline="echo", shell="no-such-shell-flywheel"), "failed to start"),
    (PythonArgs(module="x", inline="y"), "exactly one of script, module or inline"),
    (PythonArgs(script="missing.py"), "'missing.py' is not a file"),
    (MageArgs(), "at least one target"),
    (ExecArgs(command="true", dir="/no/such/dir/flywheel"), "failed to start"),
], ids=["missing-executable", "missing-command", "missing-script", "both", "neither", "missing-shell",
        "python-two", "python-missing-script", "mage-no-target", "missing-dir"])
def test_bad_input_is_a_validation_error_discarded_at_once(db, client, make_runner, workers, args, field):
    job, runs = run_job(db, client, make_runner, args)
    assert job.state == "discarded"
    assert [(r.outcome, r.error_class) for r in runs] == [("error", "validation")]
    assert field in runs[0].error


def test_args_from_go_with_null_lists_decode(db, client, make_runner, workers):
    job_id = client.enqueue("shell", '{"script":"","inline":"echo go","args":null,"env":null,"shell":"",'
                                     '"dir":"","stdin":"","timeout_seconds":0}')
    make_runner().run_until_idle(timeout=30)
    assert output(flywheel.list_runs(db, job_id)[0])["stdout"] == "go\n"


def test_python_worker_uses_the_running_interpreter(db, client, make_runner, workers, tmp_path):
    (tmp_path / "hello.py").write_text("import sys; print('script', sys.argv[1:], sys.executable)\n")
    _, script = run_job(db, client, make_runner, PythonArgs(script="hello.py", args=["a"], dir=str(tmp_path)))
    _, inline = run_job(db, client, make_runner, PythonArgs(inline="import attrs; print('attrs ok')"))
    _, module = run_job(db, client, make_runner, PythonArgs(module="json.tool", stdin='{"b": 1}'))
    assert output(script[0])["stdout"] == f"script ['a'] {sys.executable}\n"
    assert output(inline[0])["stdout"] == "attrs ok\n"  # the same installed packages as flywheel
    assert json.loads(output(module[0])["stdout"]) == {"b": 1}


def test_mage_runs_targets_with_the_binary(db, client, make_runner, workers, tmp_path):
    binary = tmp_path / "fake-mage"
    binary.write_text("#!/bin/sh\necho \"targets: $*\"\n")
    binary.chmod(0o755)
    job, runs = run_job(db, client, make_runner, MageArgs(targets=["build", "test"], binary=str(binary)))
    assert output(runs[0])["stdout"] == "targets: build test\n"


def test_mage_binary_defaults_to_magex(db, client, make_runner, workers):
    job, runs = run_job(db, client, make_runner, MageArgs(targets=["build"]))
    if output(runs[0])["exit_code"] == 0 and job.state == "succeeded":  # magex happens to be installed
        return
    assert runs[0].error_class == "validation" and '"magex"' in runs[0].error


def test_cancelling_a_running_job_stops_its_process(db, client, make_runner, workers, tmp_path):
    pid_file = tmp_path / "pid"
    job_id = client.insert(ShellArgs(inline=f"echo $$ > {pid_file}; sleep 60"))
    runner = make_runner(lease=0.6)
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the script to start")
        flywheel.cancel_job(db, job_id)
        pid = int(pid_file.read_text())
        wait_for(lambda: not _running(pid), timeout=15, what="the cancelled job's process to stop")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert flywheel.find_job(db, job_id).state == "cancelled"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (re)parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_start_new_session_child_leaves_nothing_when_it_exits(db, client, make_runner, workers, tmp_path):
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(f"""\
        sleep 60 > /dev/null 2>&1 &
        echo $! > {pid_file}
        echo done
    """)
    job, runs = run_job(db, client, make_runner, ShellArgs(inline=script))
    assert job.state == "succeeded" and output(runs[0])["stdout"] == "done\n"
    pid = int(pid_file.read_text())
    wait_for(lambda: not _running(pid), timeout=10, what="the background process to be stopped")


def test_capture_keeps_the_first_and_last_halves_and_counts_everything():
    from flywheel_plugins.workers.process import Capture

    capture = Capture(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        capture.feed(chunk)
    assert capture.total == 26 and capture.truncated
    assert capture.text() == "abcde\n[flywheel: output truncated: 16 of 26 bytes omitted]\nvwxyz"
    exact = Capture(10)
    exact.feed(b"0123456789")
    assert (exact.text(), exact.truncated) == ("0123456789", False)


def test_build_env_takes_only_allowlisted_host_variables():
    from flywheel_plugins.workers.process import build_env

    host = {"PATH": "/bin", "SECRET": "x", "HOME": "/root"}
    assert build_env(["PATH", "LANG"], {"OWN": "1", "PATH": "/opt/bin"}, host) == {"PATH": "/opt/bin", "OWN": "1"}
    assert build_env([], None, host) == {}
