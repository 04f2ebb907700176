"""Render a kustomization as `kubectl apply -k` would, for the features deploy/kubernetes uses:
resources, namespace, images and JSON 6902 patches. Anything else fails the render, so
that a manifest relying on a feature this does not apply is never validated unapplied."""

from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Kinds that live outside any namespace.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    """The objects the kustomization in `directory` builds."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise ValueError(f"{directory}: this renderer does not apply {sorted(unsupported)}")
    objects: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [document for document in yaml.safe_load_all(path.read_text()) if document]
    for image in kustomization.get("images", []):
        for container in containers(objects):
            if container["image"].split(":")[0] == image["name"]:
                name = image.get("newName", image["name"])
                container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
    for patch in kustomization.get("patches", []):
        target = named(objects, patch["target"]["kind"], patch["target"]["name"])
        for operation in yaml.safe_load(patch["patch"]):
            apply(target, operation)
    if "namespace" in kustomization:
        for manifest in objects:
            if manifest["kind"] not in CLUSTER_KINDS:
                manifest["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [
        manifest
        for manifest in objects
        if manifest["metadata"]["name"] == name and manifest["kind"] == kind
    ]
    if len(matches) != 1:
        raise ValueError(f"{len(matches)} objects of kind {kind} are named {name!r}")
    return matches[0]


def pod_specs(objects: list[Manifest]) -> list[Manifest]:
    """The pod template of every Deployment and Job."""
    return [
        manifest["spec"]["template"]["spec"]
        for manifest in objects
        if manifest["kind"] in ("Deployment", "Job")
    ]


def containers(objects: list[Manifest]) -> list[Manifest]:
    return [
        container
        for spec in pod_specs(objects)
        for container in spec.get("initContainers", []) + spec["containers"]
    ]


def apply(document: Any, operation: Manifest) -> None:
    """One JSON patch operation (RFC 6902): add, replace or remove."""
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    for part in parents:
        document = document[int(part)] if isinstance(document, list) else document[part]
    key: Any = last
    if isinstance(document, list):
        key = len(document) if last == "-" else int(last)
    exists = key in document if isinstance(document, dict) else 0 <= key < len(document)
    op = operation["op"]
    if op in ("remove", "replace") and not exists:
        raise KeyError(f"{operation['path']}: nothing to {op}")
    if op == "remove":
        del document[key]
    elif op == "add" and isinstance(document, list):
        document.insert(key, operation["value"])
    elif op in ("add", "replace"):
        document[key] = operation["value"]
    else:
        raise ValueError(f"unsupported patch operation {op!r}")
