"""The container image, checked statically (no Docker engine here): its install steps are the tested ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"(?m)^FROM ", DOCKERFILE)[1:]


def instructions(stage: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", stage)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def pins(lock: str) -> dict[str, str]:
    found = re.findall(r"(?m)^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", (ROOT / lock).read_text())
    return {name.lower().split("[")[0]: version for name, version in found}


def test_two_stages_on_one_slim_python_base_that_a_release_pins_by_digest() -> None:
    build, final = stages()
    assert build.startswith("${PYTHON_IMAGE} AS build")
    assert final.startswith("${PYTHON_IMAGE}\n")
    base = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE)
    assert base is not None and re.fullmatch(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?", base.group(1))
    assert "--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:" in DOCKERFILE  # how a release pins it


def test_only_the_virtualenv_reaches_the_final_stage() -> None:
    final = instructions(stages()[1])
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"]
    runs = [line for line in final if line.startswith("RUN")]
    assert not any(re.search(r"\b(apt-get|apk|pip|gcc|build-essential)\b", line) for line in runs)


def test_runs_as_a_fixed_non_root_uid_with_the_operator_and_liveness() -> None:
    final = instructions(stages()[1])
    assert "USER 10001:10001" in final
    assert 'ENTRYPOINT ["regcred", "run", "--liveness", "http://0.0.0.0:8080/healthz"]' in final


def test_the_image_installs_the_same_lock_resolution_as_the_tests() -> None:
    build = instructions(stages()[0])
    assert "RUN /opt/venv/bin/pip install --require-virtualenv -r /src/requirements-runtime.lock" in build
    assert "RUN /opt/venv/bin/pip install --require-virtualenv --no-deps /src" in build
    runtime, full = pins("requirements-runtime.lock"), pins("requirements.lock")
    assert runtime, "requirements-runtime.lock has no pins"
    # Both locks carry hashes: pip then installs only the very files that were locked (hash-checking mode).
    for lock in ("requirements.lock", "requirements-runtime.lock"):
        text = (ROOT / lock).read_text()
        assert text.count("--hash=sha256:") >= len(pins(lock)), f"{lock}: a pin without a hash"
    differing = {name: (version, full.get(name)) for name, version in runtime.items() if full.get(name) != version}
    assert not differing, f"re-run the two `uv pip compile` commands of the README: {differing}"


def test_the_package_built_from_what_the_dockerfile_copies_carries_the_crds_and_the_entry_point(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    copied = re.findall(r"(?m)^COPY (?!--from)(.+) /src/", DOCKERFILE)
    for line in copied:
        for name in line.split():
            if name == "requirements-runtime.lock":
                continue
            target = ROOT / name
            if target.is_dir():
                shutil.copytree(target, source / name, symlinks=True)
            else:
                shutil.copy(target, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    str(source), "-w", str(tmp_path / "out")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "regcred/crds/registrycredentials.regcred.dev.yaml" in names
    assert "regcred/crds/kopf-peering.yaml" in names
    assert "regcred = regcred.cli:main" in entry_points
    # The license pyproject.toml declares travels with the package (PEP 639: dist-info/licenses/).
    assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE")], names
    # The emulated API is demo and test infrastructure: never in the image or a `pip install`.
    assert not [n for n in names if "sandbox" in n], names
    assert "kmock" not in (ROOT / "requirements-runtime.lock").read_text()
