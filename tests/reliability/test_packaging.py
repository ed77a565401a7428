"""The wheel carries the shipped configs and JSON Schemas (issue #20).

``configs/`` and ``data_schemas/`` live at the top of the source tree; the wheel maps them into the
package (``multimodal/_configs``, ``multimodal/_schemas``). The test builds the wheel from a copy
of the sources, installs it into a fresh virtual environment that borrows this environment's
dependencies (a ``.pth`` file, no network), and runs the command line from a folder outside the
repository: ``synth``, ``validate`` (reads the schemas), ``demo --help`` and the demo's config
lookup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"configs": "multimodal/_configs", "data_schemas": "multimodal/_schemas"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_in_pyproject():
    """The package list is explicit (a mapped folder cannot be discovered): keep it complete."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["multimodal", "multimodal.*"]))
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"multimodal._configs", "multimodal._schemas"}


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 300):
    res = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, f"{args}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the sources (the checkout gets no build/ or egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("multimodal", *SHIPPED):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    args = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    _run([sys.executable, *args, "-w", dist, src], cwd=tmp, env=dict(os.environ))
    (found,) = dist.glob("multimodal-*.whl")
    return found


def test_wheel_holds_every_config_and_schema(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, inside in SHIPPED.items():
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert f"{inside}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    assert not any(n.startswith(("configs/", "data_schemas/")) for n in names)


_LOOKUP = """
import json, multimodal
from multimodal.config import load_config
from multimodal.data.manifest import SCHEMA_DIR, load_schema
from multimodal.demo import default_demo_config
load_config(default_demo_config())
load_schema("cohort_manifest")
print(json.dumps({"package": multimodal.__file__, "demo": str(default_demo_config()),
                  "schemas": str(SCHEMA_DIR)}))
"""


def test_installed_wheel_works_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=dict(os.environ))
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # this environment's dependencies, without its editable finder for multimodal (a plain path
    # line in a .pth file does not run the .pth files of the folder it adds)
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_borrowed_dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = ["-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q"]
    _run([sys.executable, *install, wheel], cwd=tmp_path, env=env)

    work = tmp_path / "elsewhere"  # no configs/ or data_schemas/ here
    work.mkdir()
    lookup = json.loads(_run([python, "-c", _LOOKUP], cwd=work, env=env).stdout)
    for path in lookup.values():
        assert Path(path).is_relative_to(site / "multimodal"), lookup  # the wheel's own files
    cli = venv / "bin" / "multimodal"
    synth = ["synth", "--out", "cohort", "--n-patients", 12, "--image-size", 8]
    _run([cli, *synth], cwd=work, env=env)
    res = _run([cli, "validate", "cohort/cohort.yaml"], cwd=work, env=env)
    assert "OK: 12 patients" in res.stdout
    res = _run([cli, "demo", "--help"], cwd=work, env=env)
    assert "--config" in res.stdout
