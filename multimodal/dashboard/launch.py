"""``multimodal dashboard RUN_DIR``: the ``streamlit run app/dashboard.py`` command line.

The app is served on 127.0.0.1 unless another host is asked for, headless (no browser is
opened), without usage statistics and with Streamlit's own logging at warning level. The run
folder, the cohort and the optional password reach the app through environment variables (a
password never appears on a command line, where other users of the machine could read it).
"""

from __future__ import annotations

import hmac
import os
import sys
from pathlib import Path

from multimodal.exceptions import MultimodalError

__all__ = [
    "ENV_COHORT",
    "ENV_PASSWORD",
    "ENV_RUN",
    "app_path",
    "check_password",
    "dashboard_env",
    "read_password_file",
    "streamlit_command",
]

ENV_RUN = "MULTIMODAL_DASHBOARD_RUN"
ENV_COHORT = "MULTIMODAL_DASHBOARD_COHORT"
ENV_PASSWORD = "MULTIMODAL_DASHBOARD_PASSWORD"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
