"""Stopping ``multimodal dashboard`` stops its Streamlit server (signals are forwarded).

The launcher runs as a real process here: a server left behind by a test would hold its port and
its memory, so every process started is killed at the end whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from multimodal.dashboard.launch import exit_status, serve

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return found
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        import psutil
    except ImportError:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X")
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.1)
    return not _running(pid)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def test_exit_status_is_what_a_shell_reports():
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(-signal.SIGTERM) == 143 and exit_status(-signal.SIGKILL) == 137


#: a stand-in server: writes the file argv[2] once ready, then on SIGTERM exits 3 (argv[1]
#: ``handles``) or ignores it (``ignores``)
_SERVER = """
import signal, sys, time
if sys.argv[1] == "handles":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[2], "w").close()
time.sleep(60)
"""


@needs_proc
@pytest.mark.parametrize(("server", "status"), [("handles", 3), ("ignores", 137)])
def test_serve_forwards_sigterm_then_kills(server, status, tmp_path):
    """``serve`` in this process (signal handlers need the main thread); a thread plays the user
    who sends SIGTERM once the stand-in server is up. Its own exit status comes back; one that
    ignores SIGTERM is killed after the grace period."""
    ready = tmp_path / "ready"
    servers: list[int] = []

    def stop_when_ready() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.extend(_children(os.getpid()))
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    user = threading.Thread(target=stop_when_ready)
    user.start()
    try:
        code = serve([sys.executable, "-c", _SERVER, server, str(ready)], grace=1.0)
    finally:
        user.join()
        _kill(servers)
    assert code == status
    assert servers and all(_gone(pid, within=5) for pid in servers)
    assert signal.getsignal(signal.SIGTERM) is before  # our handlers are put back


@pytest.mark.slow  # about 15 s for the server to start on an idle 2-core machine, 40+ when busy
@needs_proc
def test_sigterm_to_the_launcher_stops_the_streamlit_server(tiny_run, tmp_path):
    """The real thing: ``multimodal dashboard`` as a process, killed with SIGTERM once its server
    answers HTTP; the streamlit child must not outlive it."""
    pytest.importorskip("streamlit")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(tmp_path / "launcher.log", "w") as log:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "multimodal.cli",
                "dashboard",
                str(tiny_run),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not _answers(f"http://127.0.0.1:{port}/_stcore/health"):
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the dashboard did not answer within 90 s"
            time.sleep(0.3)
        servers = _children(launcher.pid)
        assert servers, "the launcher has no child process"
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=20)
        assert all(_gone(pid, within=5) for pid in servers), "the server outlived the launcher"
        assert not _answers(f"http://127.0.0.1:{port}/_stcore/health")
        assert code in (0, 143), (tmp_path / "launcher.log").read_text()
    finally:
        _kill([*servers, launcher.pid])
        launcher.wait()
