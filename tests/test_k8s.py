"""deploy/k8s: every manifest validates against the Kubernetes schemas (offline, kubernetes-validate
carries them), keeps the pods locked down, and means what it says: the real server started with the
Deployment's own command, environment and port answers every probe path the manifests name, and
each training pod's TF_CONFIG, filled in from its index as Kubernetes does, is a cluster bertclf
accepts, naming the pods the Job and its headless Service create."""

import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml

from servers import JSON, free_port, request, serving

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
VERSION = "1.30"  # the oldest Kubernetes still commonly run; every field used here exists since


def resources() -> dict[str, dict]:
    """kind/name -> resource, for every manifest kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        for resource in yaml.safe_load_all((K8S / name).read_text()):
            found[f"{resource['kind']}/{resource['metadata']['name']}"] = resource
    return found


def pod_spec(resource: dict) -> dict:
    return resource["spec"]["template"]["spec"]


def test_kustomization_lists_every_manifest_and_names_every_image():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"] for r in resources().values() if "template" in r["spec"] for c in pod_spec(r)["containers"]}
    assert used == images


@pytest.mark.parametrize("version", [VERSION, "1.37"])
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for name, resource in resources().items():
        try:
            kubernetes_validate.validate(resource, version, strict=True)  # strict: an unknown field fails
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name} against Kubernetes {version}: {'.'.join(map(str, err.path))}: {err.message}")


def test_a_misspelt_field_fails_validation():
    """The check above can fail: a typo in a field name is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = resources()["Deployment/bertclf-api"]
    broken = json.loads(json.dumps(deployment).replace('"readinessProbe"', '"readynessProbe"'))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_every_pod_is_locked_down():
    for name, resource in resources().items():
        if "template" not in resource["spec"]:
            continue
        spec = pod_spec(resource)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], name


def test_the_service_autoscaler_and_budget_point_at_the_api():
    found = resources()
    deployment = found["Deployment/bertclf-api"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in pod_spec(deployment)["containers"][0]["ports"]}
    service = found["Service/bertclf-api"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    assert found["HorizontalPodAutoscaler/bertclf-api"]["spec"]["scaleTargetRef"]["name"] == "bertclf-api"
    assert found["PodDisruptionBudget/bertclf-api"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert found["PodDisruptionBudget/bertclf-api"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_server_started_as_the_deployment_says_answers_every_probe(tmp_path, trained_models):
    deployment = resources()["Deployment/bertclf-api"]
    container = pod_spec(deployment)["containers"][0]
    args = container["args"]
    assert container["command"][0] == "/usr/bin/tini" and args[:3] == ["python", "-m", "bertclf"]
    # The pod's volumes, as folders here: the baked-in models, the tokens Secret, the feedback emptyDir.
    source, _ = trained_models
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    models = Path(env["BERTCLF_MODELS_DIR"])
    mounts[str(models)] = tmp_path / "models"
    shutil.copytree(source, mounts[str(models)])
    tokens = Path(env["BERTCLF_API_TOKENS_FILE"])
    mounts[str(tokens.parent)].mkdir()
    (mounts[str(tokens.parent)] / tokens.name).write_text("k8s-test-token-0123456789abcdef\n")
    mounts["/app/feedback"].mkdir()

    def here(value: str) -> str:
        for mount, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount) :]
        return value

    local_env = {name: here(value) for name, value in env.items()}
    # A pod's network is its own; this machine's is not: loopback, and the manifest's port if free.
    local_env["BERTCLF_HOST"] = "127.0.0.1"
    port = int(env["BERTCLF_PORT"])
    assert port == container["ports"][0]["containerPort"]
    local_env["BERTCLF_PORT"] = str(port if _free(port) else free_port())
    probes = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"/ready", "/health"}
    budget = container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]

    served = int(local_env["BERTCLF_PORT"])
    command = [sys.executable, *args[1:]]
    log = tmp_path / "server.log"
    with serving(None, log, env={**os.environ, **local_env}, command=command, port=served, start_timeout=budget):
        for path in sorted(probes):
            assert request(served, "GET", path)[0] == 200, path
        body = json.dumps({"x": ["apple banana"]})
        assert request(served, "POST", "/predict", body, JSON)[0] == 401  # the Secret's tokens are in force
        status, answer = request(
            served, "POST", "/predict", body, {**JSON, "Authorization": "Bearer k8s-test-token-0123456789abcdef"}
        )
        assert status == 200 and json.loads(answer)["model"], answer
        assert (mounts["/app/feedback"]).is_dir()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_each_training_pod_gets_a_tf_config_naming_every_worker_and_itself(monkeypatch):
    pytest.importorskip("tensorflow")
    from bertclf.training.devices import _cluster

    found = resources()
    job = found["Job/bertclf-train"]
    headless = found["Service/bertclf-train"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = pod_spec(job)
    assert pod["subdomain"] == headless["metadata"]["name"] and headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    container = pod["containers"][0]
    env = container["env"]
    names = [e["name"] for e in env]
    index_field = env[names.index("TASK_INDEX")]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert names.index("TASK_INDEX") < names.index("TF_CONFIG")  # Kubernetes expands only earlier variables
    template = env[names.index("TF_CONFIG")]["value"]
    port = container["ports"][0]["containerPort"]
    assert port in [p["port"] for p in headless["spec"]["ports"]]
    for index in range(spec["completions"]):
        monkeypatch.setenv("TF_CONFIG", re.sub(r"\$\(TASK_INDEX\)", str(index), template))
        config = _cluster()
        assert config is not None and config["task"] == {"type": "worker", "index": index}
        # Pod <i> of an Indexed Job with a subdomain is <job>-<i>.<subdomain>.
        name = job["metadata"]["name"]
        expected = [f"{name}-{i}.{pod['subdomain']}:{port}" for i in range(spec["completions"])]
        assert config["cluster"]["worker"] == expected
    assert container["command"] == ["python", "-m", "bertclf", "train"]
