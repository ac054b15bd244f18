"""Drives Helm for the chart tests (tests/chart_*.rs).

Helm here is Helm 4's own Go code, through helm-python-sdk (import name ``helm_python``), so
lint, schema validation and rendering behave exactly as ``helm lint`` / ``helm install`` do.

    python tests/chart/helm_driver.py CHART_DIR < requests.json > responses.json

The input is a JSON list of requests; the output is a JSON list with one response per request,
``{"ok": ...}`` or ``{"error": {"kind": <exception class>, "message": <Helm's message>}}``.
Requests:

    {"op": "render", "values": {...} | null, "name": "release", "namespace": "ns"}
        -> {"ok": {"<template path>": "<rendered text>", ...}}
    {"op": "validate_schema", "values": {...} | null}   -> {"ok": null}
    {"op": "lint", "values": {...} | null, "strict": true, "kube_version": "v1.29.0",
     "namespace": "ns"}
        -> {"ok": {"total_charts_linted": n, "messages": [...], "errors": [...]}}
    {"op": "chart"}
        -> {"ok": {"metadata", "values", "schema", "crds": [{"name", "data"}], "templates": [name]}}
    {"op": "install", "kubeconfig": "path", "values": {...} | null, "name": "release",
     "namespace": "ns", "storage_driver": "secret" | "memory" | null}
        -> {"ok": {"manifest": "<the installed manifest>", "status": "deployed"}}
        (a real ``helm install`` against the cluster of that kubeconfig: CRDs from crds/ first,
        then the templates; release stored as a Secret in the namespace)

The assertions live in Rust; this script only runs Helm. It never skips: a missing
helm-python-sdk is an error that says how to install it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: helm_driver.py CHART_DIR < requests.json", file=sys.stderr)
        return 2
    try:
        import helm_python as helm
    except ImportError as exc:
        print(
            f"helm-python-sdk is not installed for {sys.executable} ({exc}); "
            "run scripts/setup-python, or point LATTICE_PYTHON at a Python that has it",
            file=sys.stderr,
        )
        return 3

    chart_dir = sys.argv[1]
    requests: list[dict[str, Any]] = json.load(sys.stdin)
    responses: list[dict[str, Any]] = []
    with helm.Chart.load(chart_dir) as chart:
        for request in requests:
            try:
                responses.append({"ok": run(helm, chart, chart_dir, request)})
            except helm.HelmError as exc:
                responses.append(
                    {"error": {"kind": type(exc).__name__, "message": str(exc)}}
                )
    json.dump(responses, sys.stdout)
    return 0


def run(helm: Any, chart: Any, chart_dir: str, request: dict[str, Any]) -> Any:
    op = request["op"]
    values = request.get("values")
    if op == "render":
        return chart.render(
            values,
            name=request.get("name", "lattice-operator"),
            namespace=request.get("namespace", "lattice-system"),
            is_install=True,
        )
    if op == "validate_schema":
        chart.validate_schema(values)
        return None
    if op == "lint":
        return helm.lint(
            chart_dir,
            values,
            strict=request.get("strict", True),
            namespace=request.get("namespace", "lattice-system"),
            kube_version=request.get("kube_version"),
        )
    if op == "install":
        with helm.Config(
            kubeconfig_path=request["kubeconfig"],
            namespace=request["namespace"],
            storage_driver=request.get("storage_driver"),
        ) as config:
            release = config.install(
                chart,
                request["name"],
                values,
                namespace=request["namespace"],
                timeout=60,
            )
        info = release.get("info") or {}
        status = info.get("status") if isinstance(info, dict) else None
        return {
            "manifest": release.get("manifest", ""),
            "status": status or release.get("status"),
            "fields": sorted(release.keys()),
        }
    if op == "chart":
        return {
            "metadata": chart.metadata,
            "values": chart.values,
            "schema": chart.schema,
            "crds": [{"name": c["name"], "data": c["data"]} for c in chart.crds],
            "templates": sorted(t["name"] for t in chart.templates),
        }
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(main())
