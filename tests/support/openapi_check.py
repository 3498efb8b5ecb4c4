"""Check HTTP traffic against GitHub's published REST OpenAPI description (OpenAPI 3.0, dereferenced).

`Spec.check_request` / `Spec.check_response` return a list of problems (empty when valid). OpenAPI 3.0
schemas are JSON Schema with `nullable`; that one difference is translated before validating with
`jsonschema`. `Spec.complete` fills the required fields a fake leaves out with typed placeholders,
so a fake can answer with what matters while every answer still has GitHub's full shape.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SHARED = Path(__file__).resolve().parents[3] / "shared" / "github"
SUBSET = SHARED / "rest-openapi-subset.json"
# Reading one file: GET /repos/{owner}/{repo}/contents/{path}, cut unchanged from the same
# @octokit/openapi 23.0.2 package (generated/api.github.com.deref.json), which the subset lacks.
EXTRA = Path(__file__).with_name("openapi-contents.json")
# Requesting reviewers: POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers (request body
# and its 201 pull request), cut unchanged from the same @octokit/openapi 23.0.2 package
# (generated/api.github.com.deref.json, its $refs already inlined), which the subset lacks too.
REVIEW_REQUESTS = Path(__file__).with_name("openapi-requested-reviewers.json")
# Path parameters that may hold slashes (refs, branch names, file paths, "base...head").
SLASHY = {"ref", "branch", "path", "basehead"}


def _jsonschema(schema: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema draft 7."""
    if isinstance(schema, list):
        return [_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _jsonschema(v) for k, v in schema.items() if k not in ("nullable", "discriminator", "example")}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass
class Operation:
    method: str
    template: str
    regex: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


class Spec:
    def __init__(self) -> None:
        paths: dict[str, Any] = dict(json.loads(SUBSET.read_text())["paths"])
        for extra in (EXTRA, REVIEW_REQUESTS):
            for template, item in json.loads(extra.read_text())["paths"].items():
                paths[template] = {**paths.get(template, {}), **item}
        self.operations: list[Operation] = []
        for template, item in paths.items():
            pattern = re.sub(
                r"\{(\w+)\}",
                lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(1) in SLASHY else '[^/]+'})",
                template,
            )
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.operations.append(
                        Operation(method.upper(), template, re.compile(f"^{pattern}$"), op)
                    )
        # The most literal template wins (".../git/ref/x" before ".../{path}").
        self.operations.sort(key=lambda o: -len(re.sub(r"\{\w+\}", "", o.template)))

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method == method and (m := op.regex.match(path)):
                return op, m.groupdict()
        return None

    # --- validation -------------------------------------------------------------------------------

    def check_request(self, op: Operation, query: dict[str, str], body: Any) -> list[str]:
        problems: list[str] = []
        declared = {p["name"]: p for p in op.spec.get("parameters", []) if p["in"] == "query"}
        for name, value in query.items():
            if name not in declared:
                problems.append(f"{op.key}: undocumented query parameter {name!r}")
                continue
            schema = declared[name].get("schema", {})
            coerced: Any = value
            if schema.get("type") == "integer":
                coerced = int(value) if value.lstrip("-").isdigit() else value
            problems += _errors(f"{op.key} ?{name}", schema, coerced)
        content = (op.spec.get("requestBody") or {}).get("content", {}).get("application/json")
        if content is None:
            if body not in (None, b"", {}):
                problems.append(f"{op.key}: takes no JSON body")
        elif body is None:
            if op.spec["requestBody"].get("required"):
                problems.append(f"{op.key}: a JSON body is required")
        else:
            problems += _errors(f"{op.key} request", content["schema"], body)
        return problems

    def response_schema(self, op: Operation, status: int) -> dict[str, Any] | None:
        response = op.spec.get("responses", {}).get(str(status))
        if response is None:
            return None
        return (response.get("content") or {}).get("application/json", {}).get("schema", {})

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        response = op.spec.get("responses", {}).get(str(status))
        if response is None:
            return [f"{op.key}: status {status} is not documented"]
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema is None:
            return [] if body in (None, b"") else [f"{op.key} {status}: documented without a body"]
        return _errors(f"{op.key} {status}", schema, body)

    # --- completing a fake's answer ---------------------------------------------------------------

    def complete(self, op: Operation, status: int, value: Any) -> Any:
        schema = self.response_schema(op, status)
        return value if schema is None else complete(schema, value)


@cache
def _validator(schema_json: str) -> Draft7Validator:
    return Draft7Validator(_jsonschema(json.loads(schema_json)))


def _errors(where: str, schema: dict[str, Any], value: Any) -> list[str]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [
        f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(value)
    ]


def _placeholder(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt == "uri":
            return "https://github.example/placeholder"
        if fmt == "email":
            return "placeholder@example.com"
        return "placeholder"
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object" or "properties" in schema:
        return complete(schema, {})
    return None


def complete(schema: dict[str, Any], value: Any) -> Any:
    """`value` with every required field the schema demands filled in (given fields are kept)."""
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = schema[key]
            if value is None:
                return complete(options[0], None)
            for option in options:
                candidate = complete(option, copy.deepcopy(value))
                if not _errors("", option, candidate):
                    return candidate
            return value
    if "allOf" in schema:
        for part in schema["allOf"]:
            value = complete(part, value)
        return value
    if value is None:
        if schema.get("nullable") and schema.get("type") != "object":
            return None
        return _placeholder(schema)
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        props = schema.get("properties", {})
        out = dict(value)
        for name in schema.get("required", []):
            if name not in out:
                sub = props.get(name, {})
                out[name] = None if sub.get("nullable") else complete(sub, None)
        for name, sub in props.items():
            if name in out and isinstance(out[name], (dict, list)):
                out[name] = complete(sub, out[name])
        return out
    if isinstance(value, list) and schema.get("type") == "array":
        return [complete(schema.get("items", {}), v) for v in value]
    return value
