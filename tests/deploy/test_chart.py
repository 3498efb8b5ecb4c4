"""The Helm chart under deploy/helm/osiris and the manifests rendered from it under deploy/k8s:
Helm's linter and renderer (Helm's Go SDK, from the helm-python-sdk wheel), the Kubernetes JSON
schemas (kubernetes-validate's bundled copy, the schemas kubeconform uses), and every command, flag,
environment name and probe held against the real OSIRIS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from osiris.app.config import Settings
from osiris.cli import build_parser

from .deploy_manifests import (
    CHART,
    committed,
    credential_env_names,
    env_names,
    helm,
    kubernetes_validate,
    one,
    osiris_script,
    pods,
    render_module,
    rendered,
)

# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schemas bundled.
OLDEST_KUBERNETES = "1.25.0"
# Values that switch on everything off by default, so those templates are rendered and checked too.
EVERYTHING_ON = {
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "persistence": {"enabled": True, "storageClass": "nfs"},
    "autoscaling": {"enabled": False},
    "service": {"sessionAffinity": "None"},
    "ingress": {"cookieAffinity": False, "tls": {"enabled": False}},
    "credentials": {"values": {"OSIRIS_SECRET_KEY": "k" * 40, "OSIRIS_GITHUB_TOKEN": "ghp_x"}},
    "imagePullSecrets": [{"name": "registry"}],
    "checks": {
        "runtimeClassName": "gvisor",
        "nodeSelector": {"osiris.dev/checks": "true"},
        "tolerations": [{"key": "checks", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}},
                        },
                    }
                ]
            }
        },
    },
}
# Checks without a network on the local git host: the NetworkPolicy opens nothing outside the cluster.
CHECKS_OFFLINE = {
    "config": {"OSIRIS_CHECKS_NETWORK": "false"},
    "checks": {
        "networkPolicy": {
            "github": False,
            "database": {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "osiris-db"}}}]},
        }
    },
}
API, WORKER, CHECKS, MIGRATE = "osiris-api", "osiris-worker", "osiris-checks", "osiris-migrate"
# What the checks pods hold: their own role's URL, a placeholder signing key (Settings requires one),
# the GitHub credentials run_checks fetches versions with.
CHECKS_CREDENTIALS = {"DATABASE_URL", "OSIRIS_SECRET_KEY", "OSIRIS_GITHUB_TOKEN", "OSIRIS_GITHUB_PRIVATE_KEY"}


def all_variants() -> list[tuple[str, list[dict]]]:
    return [
        ("deploy/k8s (default values)", committed()),
        ("everything on", rendered(EVERYTHING_ON)),
        ("checks offline", rendered(CHECKS_OFFLINE)),
    ]


def other_variants() -> list[tuple[str, list[dict]]]:
    """Layouts with a Deployment switched off, validated against the schemas too."""
    return [
        ("no worker Deployment", rendered({"worker": {"enabled": False}})),
        ("no checks Deployment", rendered({"checks": {"enabled": False}})),
        ("no NetworkPolicy", rendered({"checks": {"networkPolicy": {"enabled": False}}})),
        ("everything off", rendered({"worker": {"enabled": False}, "checks": {"enabled": False}})),
    ]


# --- Helm ----------------------------------------------------------------------------------------


def test_helm_lint_finds_nothing() -> None:
    helm_python = helm()
    for values in (None, EVERYTHING_ON, CHECKS_OFFLINE, {"worker": {"enabled": False}}):
        report = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        assert report["total_charts_linted"] == 1
        assert report["errors"] == [], report
        # severity 1 is "info" (Helm's "icon is recommended"); warnings and errors fail
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_committed_manifests_are_what_the_chart_renders() -> None:
    helm()
    assert render_module.main(["--check"]) == 0, "run: .venv/bin/python deploy/render.py"


# --- Kubernetes schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("kube", [OLDEST_KUBERNETES, "latest"])
def test_manifests_validate_against_the_kubernetes_schemas(kube: str) -> None:
    kv = kubernetes_validate()
    version = kv.latest_version() if kube == "latest" else kube
    for variant, docs in all_variants() + other_variants():
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: no schema is bundled; test_service_monitor checks it
            try:
                kv.validate(doc, version, strict=True)  # strict: an unknown field is an error too
            except kv.ValidationError as exc:
                pytest.fail(f"{variant}: {doc['kind']}/{doc['metadata']['name']} on {version}: {exc}")


def test_an_invalid_manifest_is_refused() -> None:
    """The validator really validates: a misspelt field and a wrong type are caught."""
    kv = kubernetes_validate()
    deployment = one(committed(), "Deployment", API)
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)
    pdb = one(committed(), "PodDisruptionBudget", API)
    with pytest.raises(kv.ValidationError):
        kv.validate({**pdb, "spec": {**pdb["spec"], "selector": "api"}}, kv.latest_version(), strict=True)


def test_service_monitor() -> None:
    docs = rendered(EVERYTHING_ON)
    monitor = one(docs, "ServiceMonitor", "osiris")
    service = one(docs, "Service", "osiris")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert not [d for d in committed() if d["kind"] == "ServiceMonitor"], "a CRD must stay off by default"


# --- the real CLI --------------------------------------------------------------------------------


def _containers(docs: list[dict]) -> dict[str, dict]:
    return {obj["metadata"]["name"]: c for obj, spec in pods(docs) for c in spec["containers"]}


def test_commands_are_real_osiris_commands_and_flags() -> None:
    containers = _containers(committed())
    assert containers[API]["args"][0] == "serve"
    assert containers[WORKER]["args"] == ["worker", "--skip-jobs", "run_checks"]
    assert containers[CHECKS]["args"] == ["worker", "--jobs", "run_checks"]
    # migrates, then grants the checks pods' role (checks.database.role); without one, `migrate`
    assert containers[MIGRATE]["args"] == ["db", "grant-checks-role", "osiris_checks"]
    for values in ({"checks": {"database": {"role": ""}}}, {"checks": {"enabled": False}}):
        assert _containers(rendered(values))[MIGRATE]["args"] == ["migrate"]
    parser = build_parser()
    script = osiris_script()
    for name, container in containers.items():
        args = container["args"]
        parser.parse_args(args)  # an unknown flag or a bad value exits here
        # and the installed command documents each flag used
        help_text = subprocess.run(
            [str(script), args[0], "--help"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        for flag in (a for a in args[1:] if a.startswith("--")):
            assert flag in help_text, f"{name}: {flag} is not in `osiris {args[0]} --help`"


def test_serve_listens_where_the_probes_and_the_service_look() -> None:
    docs = committed()
    api = _containers(docs)[API]
    args = build_parser().parse_args(api["args"])
    config = one(docs, "ConfigMap", "osiris-config")["data"]
    [port] = api["ports"]
    assert port["name"] == "http"
    assert args.port == port["containerPort"] == int(config["OSIRIS_PORT"])
    assert args.host == config["OSIRIS_HOST"] == "0.0.0.0"
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(docs, "Service", "osiris")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    # that serve answers on these paths: test_local_run.py


# --- settings ------------------------------------------------------------------------------------


def test_every_environment_name_is_a_real_setting() -> None:
    known = {env for name in type_fields() for env in env_names(name)}
    for variant, docs in all_variants():
        config = one(docs, "ConfigMap", "osiris-config")["data"]
        assert set(config) <= known, f"{variant}: not settings: {set(config) - known}"
        for obj, spec in pods(docs):
            for c in spec["containers"]:
                names = {e["name"] for e in c.get("env", [])}
                assert names <= known, f"{variant}: {obj['metadata']['name']}: {names - known}"
        for secret in (d for d in docs if d["kind"] == "Secret"):
            assert set(secret.get("stringData") or {}) <= known


def type_fields() -> list[str]:
    from osiris.app.config import setting_fields

    return [f.path for f in setting_fields()]


def test_every_credential_setting_comes_from_a_secret_and_nothing_else_does() -> None:
    docs = committed()
    api = _containers(docs)[API]
    from_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["env"] if "valueFrom" in e}
    assert set(from_secrets) == credential_env_names() | {"DATABASE_URL"}
    assert from_secrets["DATABASE_URL"] == {"name": "osiris-database", "key": "url"}
    for name in credential_env_names():
        assert from_secrets[name]["key"] == name
        # unset unless given, except the signing key Settings requires with DATABASE_URL
        assert from_secrets[name].get("optional", False) is (name != "OSIRIS_SECRET_KEY")
    config = one(docs, "ConfigMap", "osiris-config")["data"]
    assert not set(config) & (credential_env_names() | env_names("db.url"))


def test_the_config_map_is_valid_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Settings accepts the ConfigMap's values as they are (types, JSON, networks)."""
    from osiris.app.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env
    for variant, docs in all_variants():
        for key, value in one(docs, "ConfigMap", "osiris-config")["data"].items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DATABASE_URL", "postgresql://osiris@db/osiris")
        monkeypatch.setenv("OSIRIS_SECRET_KEY", "s" * 40)
        settings = Settings()
        assert settings.server.run_worker is False, variant  # the worker Deployment runs the jobs
        assert str(settings.data_dir) == "/home/osiris/data"
        assert settings.server.trusted_proxies == ["10.0.0.0/8"]


def test_no_empty_credential_is_rendered() -> None:
    """An empty OSIRIS_GITHUB_TOKEN would be a token (""), not unset: only given values appear."""
    secret = one(rendered(EVERYTHING_ON), "Secret", "osiris-credentials")
    assert secret["stringData"] == {"OSIRIS_SECRET_KEY": "k" * 40, "OSIRIS_GITHUB_TOKEN": "ghp_x"}
    assert one(committed(), "Secret", "osiris-credentials")["stringData"] == {}
    existing = rendered({"credentials": {"existingSecret": "mine"}})
    assert not [d for d in existing if d["kind"] == "Secret"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in _containers(existing)[API]["env"]}
    assert refs == {"osiris-database", "mine"}


# --- pods ----------------------------------------------------------------------------------------


def test_every_pod_is_non_root_read_only_and_without_a_kubernetes_token() -> None:
    for variant, docs in all_variants():
        config = one(docs, "ConfigMap", "osiris-config")["data"]
        for obj, spec in pods(docs):
            where = f"{variant}: {obj['metadata']['name']}"
            assert spec["automountServiceAccountToken"] is False, where
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["runAsUser"] == 10001, where  # the image's user
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert "add" not in sc["capabilities"], where
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert "/tmp" in mounts, where  # tempfile: check copies, git scratch
                if obj["kind"] == "Deployment":  # the data dir: repositories, caches
                    assert config["OSIRIS_DATA_DIR"] in mounts, where
        assert one(docs, "ServiceAccount", "osiris")["automountServiceAccountToken"] is False


def test_the_worker_runs_jobs_apart_from_the_api_with_fewer_credentials() -> None:
    docs = committed()
    containers = _containers(docs)
    worker_env = {e["name"] for e in containers[WORKER]["env"]}
    assert worker_env < {e["name"] for e in containers[API]["env"]}
    # never the admin password (serve's bootstrap) nor the inbound webhook verifiers (the API's)
    for name in (
        "OSIRIS_ADMIN_PASSWORD",
        "OSIRIS_GITHUB_WEBHOOK_SECRET",
        "OSIRIS_SLACK_SIGNING_SECRET",
        "OSIRIS_EMAIL_WEBHOOK_SECRET",
        "OSIRIS_TELEGRAM_WEBHOOK_SECRET",
    ):
        assert name not in worker_env
    assert {"DATABASE_URL", "OSIRIS_SECRET_KEY"} <= worker_env
    worker = one(docs, "Deployment", WORKER)["spec"]["template"]["spec"]
    assert worker["enableServiceLinks"] is False  # no other Services' addresses in its environment
    # the chart's usual pod (non-root, read-only root, drop ALL: checked for every pod above); the
    # restricted one with a sandboxed runtime is the checks Deployment's
    assert worker["securityContext"]["runAsNonRoot"] is True
    assert worker["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert one(docs, "ConfigMap", "osiris-config")["data"]["OSIRIS_RUN_WORKER"] == "false"


def test_checks_run_in_their_own_restricted_pods_with_a_subset_of_the_credentials() -> None:
    for variant, docs in all_variants():
        containers = _containers(docs)
        checks_env = {e["name"] for e in containers[CHECKS]["env"]}
        worker_env = {e["name"] for e in containers[WORKER]["env"]}
        assert checks_env == CHECKS_CREDENTIALS, variant
        assert checks_env < worker_env, variant  # a strict subset of the main worker's
        # no chat-provider or mail secret, no admin password, no webhook secret
        for name in credential_env_names() - CHECKS_CREDENTIALS:
            assert name not in checks_env, f"{variant}: {name}"
        assert not [n for n in checks_env if any(w in n for w in ("TWILIO", "SLACK", "SMTP", "TELEGRAM"))]
        assert not [n for n in checks_env if "WEBHOOK" in n or "ADMIN" in n]
        # the restricted pod: no token, no service links, non-root, seccomp from checks.seccompProfile
        checks = one(docs, "Deployment", CHECKS)
        spec = checks["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        [container] = spec["containers"]
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert checks["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "checks"
    # the sandboxed runtime and scheduling options are the checks pods', not the main worker's
    docs = rendered(EVERYTHING_ON)
    checks = one(docs, "Deployment", CHECKS)["spec"]["template"]["spec"]
    worker = one(docs, "Deployment", WORKER)["spec"]["template"]["spec"]
    assert checks["runtimeClassName"] == "gvisor"
    assert checks["nodeSelector"] == {"osiris.dev/checks": "true"}
    assert checks["tolerations"][0]["key"] == "checks"
    assert "podAntiAffinity" in checks["affinity"]
    assert not {"runtimeClassName", "nodeSelector", "tolerations", "affinity"} & worker.keys()
    assert "runtimeClassName" not in one(committed(), "Deployment", CHECKS)["spec"]["template"]["spec"]
    # a Localhost profile (one that allows unshare for OSIRIS's own sandbox) reaches pod and container
    profile = {"type": "Localhost", "localhostProfile": "profiles/osiris-checks.json"}
    local_deployment = one(rendered({"checks": {"seccompProfile": profile}}), "Deployment", CHECKS)
    local = local_deployment["spec"]["template"]["spec"]
    assert local["securityContext"]["seccompProfile"] == profile
    assert local["containers"][0]["securityContext"]["seccompProfile"] == profile
    kv = kubernetes_validate()
    kv.validate(local_deployment, kv.latest_version(), strict=True)


def test_the_checks_pods_have_a_database_role_of_their_own_and_no_signing_key() -> None:
    """The checks pods run agents' code: their DATABASE_URL is the restricted role's (granted by the
    migration Job, tests/app/test_checks_role.py), and the key that signs every session is not
    theirs (they sign nothing; Settings only requires some value)."""
    for variant, docs in all_variants():
        containers = _containers(docs)
        env = {e["name"]: e for e in containers[CHECKS]["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "osiris-checks-database",
            "key": "url",
        }
        api_key = next(e for e in containers[API]["env"] if e["name"] == "OSIRIS_SECRET_KEY")
        assert "valueFrom" in api_key and "valueFrom" not in env["OSIRIS_SECRET_KEY"], variant
        assert env["OSIRIS_SECRET_KEY"]["value"] == "unused: the checks pods sign nothing"
        for name in ("OSIRIS_GITHUB_TOKEN", "OSIRIS_GITHUB_PRIVATE_KEY"):  # fetching versions on GitHub
            assert env[name]["valueFrom"]["secretKeyRef"]["optional"] is True
    # an operator's own Secret and key; or, knowingly, the shared role
    own = {"checks": {"database": {"existingSecret": "osiris-db-checks", "key": "uri", "role": "checker"}}}
    docs = rendered(own)
    env = {e["name"]: e for e in _containers(docs)[CHECKS]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "osiris-db-checks", "key": "uri"}
    assert _containers(docs)[MIGRATE]["args"] == ["db", "grant-checks-role", "checker"]
    shared = {
        e["name"]: e
        for e in _containers(rendered({"checks": {"database": {"existingSecret": ""}}}))[CHECKS]["env"]
    }
    assert shared["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "osiris-database", "key": "url"}
    # a role name that is not a plain identifier, or the signing key listed for the checks pods, fails
    for bad in (
        {"checks": {"database": {"role": "x; DROP TABLE tasks"}}},
        {"checks": {"credentials": ["OSIRIS_SECRET_KEY"]}},
    ):
        with pytest.raises(Exception, match="checks"):
            rendered(bad)


def _pod_settings(container: dict, config: dict[str, str], tmp_path: Path) -> Settings:
    """Settings as the container would build them: the ConfigMap, its `value` entries, and its
    secretKeyRefs with a Secret that holds only the required keys (DATABASE_URL, the signing key);
    then its `worker --jobs/--skip-jobs` flags applied as `cmd_worker` applies them."""
    env = dict(config)
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif not entry["valueFrom"]["secretKeyRef"].get("optional"):
            env[entry["name"]] = (
                "postgresql://osiris@db/osiris" if entry["name"] == "DATABASE_URL" else "s" * 40
            )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # no .env
        for name in [n for n in os.environ if n.startswith("OSIRIS_") or n == "DATABASE_URL"]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        settings = Settings()
    args = build_parser().parse_args(container["args"])
    if container["args"][0] == "worker":
        for field, given in (("jobs", args.jobs), ("skip_jobs", args.skip_jobs)):
            if given is not None:
                settings = settings.model_copy(
                    update={"worker": {field: [k.strip() for k in given.split(",") if k.strip()]}}
                )
    return settings


def _job_kinds(container: dict, config: dict[str, str], tmp_path: Path) -> set[str]:
    from osiris.app import jobs

    return set(jobs.handlers_for(_pod_settings(container, config, tmp_path)))


@pytest.fixture(scope="module")
def every_job_kind() -> set[str]:
    """Every job kind a worker can take: the handlers osiris.server's extensions register too."""
    import osiris.server
    from osiris.app import jobs

    osiris.server._extensions()  # registers the GitHub events job, as serve and worker do at start
    kinds = set(jobs.HANDLERS)
    assert {"run_checks", "publish_artifact", "notify_requester"} <= kinds
    return kinds


def test_the_checks_worker_takes_run_checks_only_and_the_worker_everything_else(
    every_job_kind: set[str], tmp_path: Path
) -> None:
    for variant, docs in all_variants():
        config = one(docs, "ConfigMap", "osiris-config")["data"]
        containers = _containers(docs)
        checks = _job_kinds(containers[CHECKS], config, tmp_path)
        worker = _job_kinds(containers[WORKER], config, tmp_path)
        assert checks == {"run_checks"}, variant
        assert "run_checks" not in worker, variant
        assert checks | worker == every_job_kind, variant  # no kind of job is left unworked
        assert _pod_settings(containers[API], config, tmp_path).server.run_worker is False
    # without the checks Deployment the worker takes every kind (checks included)
    docs = rendered({"checks": {"enabled": False}})
    config = one(docs, "ConfigMap", "osiris-config")["data"]
    assert _job_kinds(_containers(docs)[WORKER], config, tmp_path) == every_job_kind
    assert CHECKS not in _containers(docs)
    # without the worker Deployment the API pods run the jobs in-process, but never the checks
    docs = rendered({"worker": {"enabled": False}})
    config = one(docs, "ConfigMap", "osiris-config")["data"]
    containers = _containers(docs)
    api = _pod_settings(containers[API], config, tmp_path)
    assert api.server.run_worker is True
    assert _job_kinds(containers[API], config, tmp_path) == every_job_kind - {"run_checks"}
    assert _job_kinds(containers[CHECKS], config, tmp_path) == {"run_checks"}


def _egress_ports(policy: dict) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}


def _internet_rules(policy: dict) -> list[dict]:
    return [r for r in policy["spec"]["egress"] if any("ipBlock" in peer for peer in r.get("to", []))]


def test_the_checks_pods_network_policy() -> None:
    docs = committed()
    policy = one(docs, "NetworkPolicy", CHECKS)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for obj, _ in pods(docs):  # it selects the checks pods and no other
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert (selector.items() <= labels.items()) is (obj["metadata"]["name"] == CHECKS)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy["spec"].get("ingress")  # nothing connects to a checks pod
    for rule in policy["spec"]["egress"]:
        assert rule.get("ports"), rule  # no rule opens every port
    # DNS, PostgreSQL, and HTTP(S) outside the cluster (OSIRIS_CHECKS_NETWORK=true by default)
    assert _egress_ports(policy) == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 80), ("TCP", 443)}
    [dns] = [
        r for r in policy["spec"]["egress"] if ("UDP", 53) in {(p["protocol"], p["port"]) for p in r["ports"]}
    ]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    [internet] = _internet_rules(policy)
    blocks = [peer["ipBlock"] for peer in internet["to"]]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    # not the cluster's own networks nor the cloud metadata endpoint
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])
    # checks offline on the local git host: DNS and the database only, the database narrowed
    offline = one(rendered(CHECKS_OFFLINE), "NetworkPolicy", CHECKS)
    assert _egress_ports(offline) == {("UDP", 53), ("TCP", 53), ("TCP", 5432)}
    assert not _internet_rules(offline)
    [database] = [r for r in offline["spec"]["egress"] if r["ports"] == [{"protocol": "TCP", "port": 5432}]]
    assert database["to"] == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "osiris-db"}}}]
    # checks offline on GitHub: the worker still fetches and reports, over HTTPS only
    github = one(rendered({"config": {"OSIRIS_CHECKS_NETWORK": False}}), "NetworkPolicy", CHECKS)
    assert _egress_ports(github) == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)}
    # and it can be turned off, or goes with the checks Deployment
    assert not [
        d for d in rendered({"checks": {"networkPolicy": {"enabled": False}}}) if d["kind"] == "NetworkPolicy"
    ]
    assert not [d for d in rendered({"checks": {"enabled": False}}) if d["kind"] == "NetworkPolicy"]


def test_api_scales_and_survives_disruption() -> None:
    docs = committed()
    deployment = one(docs, "Deployment", API)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = one(docs, "HorizontalPodAutoscaler", API)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    assert hpa["spec"]["minReplicas"] >= 2
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    pdb = one(docs, "PodDisruptionBudget", API)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] >= 1
    off = one(rendered(EVERYTHING_ON), "Deployment", API)
    assert off["spec"]["replicas"] >= 2
    for obj, _ in pods(docs):  # no pod of the worker or job matches the API's selector
        if obj["metadata"]["name"] != API:
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert not pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_ingress_keeps_websockets_and_mcp_sessions() -> None:
    docs = committed()
    ingress = one(docs, "Ingress", "osiris")
    notes = ingress["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert notes["nginx.ingress.kubernetes.io/proxy-http-version"] == "1.1"
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    service = one(docs, "Service", "osiris")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    # both affinities can be turned off
    everything = rendered(EVERYTHING_ON)
    assert (
        "nginx.ingress.kubernetes.io/affinity"
        not in one(everything, "Ingress", "osiris")["metadata"]["annotations"]
    )
    assert one(everything, "Service", "osiris")["spec"]["sessionAffinity"] == "None"


def test_migrations_run_as_a_hook_after_the_secret_they_need() -> None:
    docs = committed()
    job = one(docs, "Job", MIGRATE)
    secret = one(docs, "Secret", "osiris-credentials")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == hooks["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_render_script_runs_as_a_program() -> None:
    helm()
    proc = subprocess.run(
        [sys.executable, str(CHART.parents[1] / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
