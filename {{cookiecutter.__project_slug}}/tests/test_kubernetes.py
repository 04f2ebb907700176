"""deploy/kubernetes: every object valid for the cluster, every variable a setting the service
reads, probes that answer, and room for running turns to finish on shutdown."""

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.config import Settings

from .support.kustomize import Manifest, containers, named, pod_specs, render

KUBERNETES = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
KUSTOMIZATIONS = ["base", "migration", "overlays/example", "overlays/example/migration"]
# The oldest Kubernetes release the manifests must work on.
KUBERNETES_VERSION = "1.31.0"
# Read by libraries, not by Settings: uvicorn, and the model providers' clients.
LIBRARY_VARIABLES = {"FORWARDED_ALLOW_IPS", "AWS_REGION", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"}


def example() -> list[Manifest]:
    return render(KUBERNETES / "overlays" / "example")


def named_container(objects: list[Manifest], name: str) -> Manifest:
    (container,) = [container for container in containers(objects) if container["name"] == name]
    return container


def settings_map(objects: list[Manifest]) -> Manifest:
    """The ConfigMap the service's pods read: the settings every replica runs with."""
    (source,) = named_container(objects, "app")["envFrom"]
    return named(objects, "ConfigMap", source["configMapRef"]["name"])


def settings_of(objects: list[Manifest]) -> dict[str, str]:
    return settings_map(objects)["data"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_is_valid_for_kubernetes(kustomization: str) -> None:
    objects = render(KUBERNETES / kustomization)

    assert objects
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def comparable(objects: Iterable[Manifest]) -> list[str]:
    """The objects as sorted YAML documents, a generated ConfigMap's hash left out of its name."""
    documents = [yaml.safe_dump(manifest, sort_keys=True) for manifest in objects if manifest]
    hashed = re.compile(r"(name: \S+)-[0-9a-z]{10}$", re.MULTILINE)
    return sorted(hashed.sub(r"\1-(hash)", document) for document in documents)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubectl_builds_what_these_tests_read(kustomization: str) -> None:
    """The tests read the manifests as support/kustomize.py renders them; kubectl's own build
    must be the same, but for the hash in a generated ConfigMap's name."""
    directory = KUBERNETES / kustomization
    command = ["kubectl", "kustomize", str(directory)]
    built = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    assert comparable(yaml.safe_load_all(built)) == comparable(render(directory))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pods_run_as_an_account_their_own_kustomization_makes(kustomization: str) -> None:
    """Each kustomization is applied alone (the migration before the service, into a namespace
    that is new on a first deployment): a pod naming an account made by another would never be
    admitted."""
    objects = render(KUBERNETES / kustomization)
    made = {"default"} | {
        manifest["metadata"]["name"] for manifest in objects if manifest["kind"] == "ServiceAccount"
    }

    for pod in pod_specs(objects):
        assert pod.get("serviceAccountName", "default") in made


def test_every_variable_is_one_the_service_reads() -> None:
    objects = example() + render(KUBERNETES / "overlays" / "example" / "migration")
    named_ones = set(settings_of(objects))
    named_ones |= {
        variable["name"]
        for container in containers(objects)
        for variable in container.get("env", [])
    }

    settings = {name.upper() for name in Settings.model_fields}

    assert named_ones - settings - LIBRARY_VARIABLES == set()
    assert {"DATABASE_URL", "CURSOR_SECRET", "ALLOWED_HOSTS"} <= named_ones


def test_the_deployment_checks_its_callers() -> None:
    """AUTH_MODE=none answers only the service's own machine, and `serve` refuses to listen
    beyond it: a pod with it would never start."""
    assert settings_of(example())["AUTH_MODE"] in {"api_keys", "jwt"}


def test_a_changed_setting_rolls_the_pods_out() -> None:
    """The pods read their settings as they start: a ConfigMap changed in place would reach them
    only as they happen to be replaced. Generated, its name follows its contents, so that a
    change renames it in the Deployment too, which rolls the pods out onto it."""
    base, overlay = render(KUBERNETES / "base"), example()

    assert settings_of(base)["ALLOWED_HOSTS"] != settings_of(overlay)["ALLOWED_HOSTS"]
    assert settings_map(base)["metadata"]["name"] != settings_map(overlay)["metadata"]["name"]
    assert settings_of(base).keys() == settings_of(overlay).keys()


def test_the_probes_answer_without_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = example()
    monkeypatch.setenv("ALLOWED_HOSTS", settings_of(objects)["ALLOWED_HOSTS"])
    app = named_container(objects, "app")

    with TestClient(create_app()) as client:
        for probe in (app["readinessProbe"], app["livenessProbe"]):
            request = probe["httpGet"]
            response = client.get(request["path"])  # by the pod's IP address, as the kubelet

            assert response.status_code == 200, (request, response.text)


def test_pods_of_the_namespace_reach_the_service_by_its_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NetworkPolicy lets the namespace's pods in: ALLOWED_HOSTS must take the names they
    call the Service by, or every one of their requests gets 400 `invalid_host`."""
    objects = example()
    monkeypatch.setenv("ALLOWED_HOSTS", settings_of(objects)["ALLOWED_HOSTS"])
    monkeypatch.setenv("AUTH_MODE", "api_keys")
    service = named(objects, "Service", "{{ cookiecutter.__project_slug }}")["metadata"]
    names = [service["name"], f"{service['name']}.{service['namespace']}.svc.cluster.local"]

    with TestClient(create_app()) as client:
        for name in names:
            response = client.get("/sessions", headers={"Host": name})

            assert response.status_code == 401, (name, response.text)  # past the Host check


def test_unready_pods_do_not_hold_node_drains() -> None:
    """With the database down every pod is unready: a budget counting them would refuse every
    eviction, and a node drain or a cluster upgrade would wait for the database."""
    (budget,) = [manifest for manifest in example() if manifest["kind"] == "PodDisruptionBudget"]

    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_idle_connections_outlive_the_ingress_controllers() -> None:
    # Else the controller now and then sends a request down a connection the pod is closing.
    app = named_container(example(), "app")
    options = dict(option.split("=") for option in app["command"] if option.startswith("--"))

    assert app["command"][:2] == ["{{ cookiecutter.__project_slug }}", "serve"]
    assert int(options["--timeout-keep-alive"]) > 60  # ingress-nginx's upstream keep-alive


def test_running_turns_have_time_to_finish_on_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = example()
    for name, value in settings_of(objects).items():
        monkeypatch.setenv(name, value)
    (pod,) = [spec for spec in pod_specs(objects) if spec["containers"][0]["name"] == "app"]
    pause = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    # Any AUTH_MODE but jwt, whose identity provider the manifests leave to the owner to set.
    settings = Settings(auth_mode="api_keys")
    # A request whose body is still arriving at SIGTERM may start its turn after it; the turn's
    # save may wait for a pooled connection, then for its statement.
    longest = settings.request_body_timeout + settings.session_wait_timeout + settings.turn_timeout
    longest += settings.db_pool_timeout + settings.db_statement_timeout_ms / 1000

    assert pod["terminationGracePeriodSeconds"] >= pause + longest


def test_pods_run_unprivileged() -> None:
    objects = example() + render(KUBERNETES / "overlays" / "example" / "migration")

    for pod in pod_specs(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
    for container in containers(objects):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"requests", "limits"} <= set(container["resources"])


def test_the_overlay_names_one_image_for_the_service_and_its_migration() -> None:
    images = {container["image"] for container in containers(example())}
    images |= {
        container["image"]
        for container in containers(render(KUBERNETES / "overlays" / "example" / "migration"))
    }

    assert images == {"registry.example.com/{{ cookiecutter.__project_slug }}:0.1.0"}
