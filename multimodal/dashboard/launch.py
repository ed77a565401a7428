"""``multimodal dashboard RUN_DIR``: the ``streamlit run app/dashboard.py`` command line.

The app is served on 127.0.0.1 unless another host is asked for, headless (no browser is
opened), without usage statistics and with Streamlit's own logging at warning level. The run
folder, the cohort and the optional password reach the app through environment variables (a
password never appears on a command line, where other users of the machine could read it).

:func:`serve` runs the server as a child process and stops it with the launcher: SIGTERM, SIGINT
and SIGHUP sent to the launcher are passed on to the server, which gets :data:`STOP_GRACE` seconds
to exit before it is killed; the launcher's exit status is the server's. On Linux the server is
also told to stop when the launcher dies without a chance to pass anything on (SIGKILL).
"""

from __future__ import annotations

import hmac
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from multimodal.exceptions import MultimodalError

__all__ = [
    "ENV_COHORT",
    "ENV_PASSWORD",
    "ENV_RUN",
    "app_path",
    "check_password",
    "dashboard_env",
    "exit_status",
    "read_password_file",
    "serve",
    "streamlit_command",
]

ENV_RUN = "MULTIMODAL_DASHBOARD_RUN"
ENV_COHORT = "MULTIMODAL_DASHBOARD_COHORT"
ENV_PASSWORD = "MULTIMODAL_DASHBOARD_PASSWORD"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Signals passed on to the server.
FORWARDED = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
#: Seconds the server has to exit after a forwarded signal before it is killed.
STOP_GRACE = 10.0


def app_path() -> Path:
    """``app/dashboard.py`` of the source tree (the package is installed editable)."""
    path = Path(__file__).resolve().parents[2] / "app" / "dashboard.py"
    if not path.is_file():
        raise MultimodalError(
            f"the dashboard app is not at {path}; install multimodal from its source tree "
            "(`pip install -e .[dashboard]`), which ships app/"
        )
    return path


def streamlit_command(host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """argv that serves the dashboard on ``host:port``."""
    if not 0 < int(port) < 65536:
        raise MultimodalError(f"--port {port}: give a port between 1 and 65535")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        str(host),
        "--server.port",
        str(int(port)),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--logger.level",
        "warning",
        "--client.toolbarMode",
        "minimal",
    ]


def dashboard_env(
    run_dir: str | Path, cohort: str | Path | None = None, password: str | None = None
) -> dict[str, str]:
    """The environment of the streamlit process: ours plus the run, cohort and password."""
    env = dict(os.environ)
    env[ENV_RUN] = str(Path(run_dir).expanduser().resolve())
    env.pop(ENV_COHORT, None)
    if cohort:
        env[ENV_COHORT] = str(Path(cohort).expanduser().resolve())
    if password:
        env[ENV_PASSWORD] = password
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def read_password_file(path: str | Path) -> str:
    """The password in ``path`` (first line, surrounding whitespace removed)."""
    try:
        text = Path(path).read_text().splitlines()
    except OSError as exc:
        raise MultimodalError(f"--password-file {path}: cannot read it ({exc.strerror})") from None
    if not text or not text[0].strip():
        raise MultimodalError(
            f"--password-file {path} is empty; put the password on its first line"
        )
    return text[0].strip()


def check_password(given: str, expected: str) -> bool:
    """Constant-time comparison (``hmac.compare_digest``) of a typed password."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the launcher dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its exit code, or 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


def serve(
    argv: Sequence[str], env: Mapping[str, str] | None = None, grace: float = STOP_GRACE
) -> int:
    """Run ``argv`` (the server) until it exits; returns its exit status (:func:`exit_status`).

    SIGTERM, SIGINT and SIGHUP received meanwhile are forwarded to the server; it is killed when it
    has not exited ``grace`` seconds after the first one, or at once on a second one. The server
    runs in its own process group, so a Ctrl-C at the terminal reaches it once, through us.
    """
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if child and child[0].poll() is None:
            if len(received) > 1:
                child[0].kill()
            else:
                child[0].send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        child.append(
            subprocess.Popen(
                list(argv),
                env=None if env is None else dict(env),
                process_group=0,
                preexec_fn=_stop_with_parent if sys.platform.startswith("linux") else None,
            )
        )
        proc = child[0]
        if received and proc.poll() is None:  # a signal came while the server was starting
            proc.send_signal(received[0])
        deadline = None
        while True:
            if received and deadline is None:
                deadline = time.monotonic() + grace
            try:
                return exit_status(proc.wait(timeout=0.2))
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    proc.kill()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child and child[0].poll() is None:  # an error of ours: never leave the server behind
            child[0].kill()
            child[0].wait()
