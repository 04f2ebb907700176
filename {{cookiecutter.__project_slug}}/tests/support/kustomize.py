"""Render a kustomization as `kubectl apply -k` would, for the features deploy/kubernetes uses:
resources, namespace, images, JSON 6902 patches and ConfigMaps generated from env files and
literals. Anything else fails the render, so that a manifest relying on a feature this does not
apply is never validated unapplied. A generated ConfigMap's name ends with a hash of its data, as
kustomize's does (though not kustomize's own hash), and the pods that read it are told that name."""

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "patches",
    "configMapGenerator",
}
GENERATOR_SUPPORTED = {"name", "behavior", "envs", "literals"}
# Kinds that live outside any namespace.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    """The objects the kustomization in `directory` builds."""
    objects, generated = build(directory)
    for config_map in generated:
        old_name = config_map["metadata"]["name"]
        config_map["metadata"]["name"] = new_name = f"{old_name}-{content_hash(config_map)}"
        for reference in config_map_references(objects):
            if reference["name"] == old_name:
                reference["name"] = new_name
    return objects


def build(directory: Path) -> tuple[list[Manifest], list[Manifest]]:
    """The objects of the kustomization in `directory`, and those of them that its generators
    (or its resources') made, their names not yet suffixed."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise ValueError(f"{directory}: this renderer does not apply {sorted(unsupported)}")
    objects: list[Manifest] = []
    generated: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            built, made = build(path)
            objects += built
            generated += made
        else:
            objects += [document for document in yaml.safe_load_all(path.read_text()) if document]
    for generator in kustomization.get("configMapGenerator", []):
        generate(directory, generator, objects, generated)
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
    return objects, generated


def generate(
    directory: Path, generator: Manifest, objects: list[Manifest], generated: list[Manifest]
) -> None:
    """A ConfigMap of a configMapGenerator: new (behavior create), or merged into the one of
    the same name that a resource generated (behavior merge)."""
    unsupported = set(generator) - GENERATOR_SUPPORTED
    if unsupported:
        raise ValueError(f"{directory}: this renderer does not generate {sorted(unsupported)}")
    lines = [line for env in generator.get("envs", []) for line in env_lines(directory / env)]
    data = dict(line.split("=", 1) for line in lines + generator.get("literals", []))
    behavior = generator.get("behavior", "create")
    if behavior == "merge":
        (config_map,) = [
            made for made in generated if made["metadata"]["name"] == generator["name"]
        ]
        config_map["data"] |= data
    elif behavior == "create":
        metadata = {"name": generator["name"]}
        config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        objects.append(config_map)
        generated.append(config_map)
    else:
        raise ValueError(f"{directory}: this renderer does not apply behavior {behavior!r}")


def env_lines(path: Path) -> list[str]:
    """The KEY=VALUE lines of an env file, without its comments and blank lines."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    for line in lines:
        if "=" not in line:
            raise ValueError(f"{path}: {line!r} is not KEY=VALUE")
    return lines


def content_hash(config_map: Manifest) -> str:
    document = json.dumps(config_map["data"], sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:10]


def config_map_references(objects: list[Manifest]) -> list[Manifest]:
    """Where pods name a ConfigMap: what their containers read of it, and their volumes."""
    references = []
    for container in containers(objects):
        for source in container.get("envFrom", []):
            references += [source["configMapRef"]] if "configMapRef" in source else []
        for variable in container.get("env", []):
            key_reference = variable.get("valueFrom", {}).get("configMapKeyRef")
            references += [key_reference] if key_reference else []
    for spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            references += [volume["configMap"]] if "configMap" in volume else []
    return references


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
