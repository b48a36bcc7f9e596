"""Validate Kubernetes manifests offline; run by the deploy tools' own Python (it has
kubernetes-validate and jsonschema, which the project's venv does not).

    .cache/deploy-tools/venv/bin/python tests/deploy/k8s_validate.py VERSION CRD_DIR FILE...

Built-in kinds: kubernetes-validate's bundled JSON schemas of Kubernetes VERSION, strict
(unknown fields are errors). Custom resources (ServiceMonitor, PrometheusRule): the
openAPIV3Schema of the CRDs in CRD_DIR (the Prometheus Operator's own), with unknown fields made
errors too. Prints one line per resource; exit 1 if any failed or had no schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml


def strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            out["pattern"] = "(?i)^" + pattern[5:]  # Go's regexp allows the flag later than re
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schemas(folder: Path) -> dict[tuple[str, str], Any]:
    schemas: dict[tuple[str, str], Any] = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main(argv: list[str]) -> int:
    version, crd_dir, files = argv[0], Path(argv[1]), argv[2:]
    crds = crd_schemas(crd_dir) if crd_dir.is_dir() else {}
    failed = 0
    for name in files:
        for doc in yaml.safe_load_all(Path(name).read_text()):
            if not doc:
                continue
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            try:
                if key in crds:
                    errors = list(jsonschema.Draft7Validator(crds[key]).iter_errors(doc))
                    if errors:
                        raise errors[0]
                    print(f"ok {what} (CRD schema)")
                else:
                    kubernetes_validate.validate(doc, version, strict=True)
                    print(f"ok {what} (Kubernetes {version})")
            except kubernetes_validate.SchemaNotFoundError:
                print(f"FAIL {what}: no schema for {key}")
                failed += 1
            except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
                message = getattr(exc, "message", str(exc))
                path = "/".join(str(p) for p in getattr(exc, "path", ()))
                print(f"FAIL {what}: {path}: {message}")
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
