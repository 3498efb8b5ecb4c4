"""The chart and its rendered manifests, as data for tests/deploy: load deploy/k8s/, render the
chart with other values (Helm's engine from the helm-python-sdk wheel), and the real names of
OSIRIS's settings and commands to hold them against."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from osiris.app.config import setting_fields

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "osiris"
K8S = ROOT / "deploy" / "k8s"
POD_KINDS = ("Deployment", "Job")


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_render", ROOT / "deploy" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_module = _render_module()


def _tool(module: str, reason: str) -> Any:
    """The module, or a skip naming what to install; under CI (.ci/run installs the test extras,
    CI=true) a missing tool is a failure, never a skip."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=reason)


def helm() -> Any:
    """Helm's engine: the helm-python-sdk wheel (Helm's Go SDK), a test extra."""
    return _tool(
        "helm_python",
        "helm-python-sdk (Helm's Go SDK as a PyPI wheel) is not installed: pip install -e '.[test]'",
    )


def kubernetes_validate() -> Any:
    return _tool(
        "kubernetes_validate",
        "kubernetes-validate (bundled Kubernetes JSON schemas) is not installed: pip install -e '.[test]'",
    )


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def committed() -> list[dict[str, Any]]:
    docs = [doc for path in sorted(K8S.glob("*.yaml")) for doc in parse(path.read_text())]
    assert docs, "deploy/k8s is empty: run deploy/render.py"
    return docs


def rendered(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    helm()
    return [doc for text in render_module.render(values).values() for doc in parse(text)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pods(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every Deployment and Job."""
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            yield doc, doc["spec"]["template"]["spec"]


# --- what OSIRIS really reads -------------------------------------------------------------------


def env_names(path: str) -> set[str]:
    """The environment names pydantic-settings reads for the setting at `path` (`github.token`)."""
    return next(set(f.env_names) for f in setting_fields() if f.path == path)


def all_env_names() -> dict[str, str]:
    """Environment name -> setting path (`github.token`), for every setting."""
    return {env: f.path for f in setting_fields() for env in f.env_names}


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


def credential_env_names() -> set[str]:
    """Each SecretStr setting (alone, optional, or inside a dict) by its primary environment name."""
    return {f.env for f in setting_fields() if _holds_secret(f.info.annotation)}


def osiris_script() -> Path:
    """The `osiris` console script of the interpreter running the tests (the venv's)."""
    script = Path(sys.executable).parent / "osiris"
    if not script.exists():
        pytest.skip(f"no osiris script next to {sys.executable}: pip install -e .")
    return script
