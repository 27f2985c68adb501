"""The workflow's config as Snakemake passes it, made to match its JSON schema.

``snakemake --config seeds=[0]`` hands the workflow ``{"seeds": ["0"]}``: Snakemake reads a
value on the command line as YAML only at its top level, and leaves list items and nested
values as strings, which the schema then refuses (``'0' is not of type 'integer'``).
:func:`coerce_to_schema` turns such strings into the numbers and booleans the schema asks for
before validation; a string that does not read as one is left for validation to refuse,
naming the key; a whole number written as a float (``n_clusters: 8.0``) becomes the integer
where the schema asks for one, so that it names the same run as ``8``.
:func:`schema_problem` is that refusal in one line (Snakemake's own prints the whole schema
after it), and :func:`config_origin` says where a key's value came from.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["coerce_to_schema", "config_origin", "schema_problem"]

_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "false": False}
_NULLS = {"null", "none", "~"}


def coerce_to_schema(value: Any, schema: Mapping, root: Mapping | None = None) -> Any:
    """Return ``value`` with the strings that stand where ``schema`` wants a number, a
    boolean or null turned into one (recursively through objects and arrays; lists and dicts
    are changed in place). ``root`` resolves ``$ref: "#/$defs/..."`` (default: ``schema``).

    A string is kept when the schema accepts it as a string there (its ``enum`` or ``const``
    included), or when it does not read as any type the schema wants. A float with no
    fractional part becomes an int where the schema takes integers but no other numbers
    (``8.0`` → ``8``); other floats are left for validation to refuse there.
    """
    root = schema if root is None else root
    branches = _branches(schema, root)
    if isinstance(value, str):
        return _coerce_string(value, branches)
    if isinstance(value, float):
        wanted = set().union(*(_types(b) for b in branches))
        if value.is_integer() and "integer" in wanted and "number" not in wanted:
            return int(value)
        return value
    if isinstance(value, list):
        for branch in branches:
            if "items" in branch:
                value[:] = [coerce_to_schema(v, branch["items"], root) for v in value]
                break
    elif isinstance(value, dict):
        for branch in branches:
            properties = branch.get("properties", {})
            extra = branch.get("additionalProperties")
            if not properties and not isinstance(extra, Mapping):
                continue
            for key, item in value.items():
                sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
                if sub is not None:
                    value[key] = coerce_to_schema(item, sub, root)
            break
    return value


def _branches(schema: Mapping, root: Mapping) -> list[Mapping]:
    """The schema and its ``oneOf``/``anyOf`` alternatives, ``$ref`` resolved."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    found = [schema]
    for key in ("oneOf", "anyOf"):
        for alternative in schema.get(key, []):
            found += _branches(alternative, root)
    return found


def _types(branch: Mapping) -> set[str]:
    kind = branch.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _coerce_string(value: str, branches: list[Mapping]) -> Any:
    for branch in branches:
        if "string" in _types(branch):
            allowed = branch.get("enum", [branch["const"]] if "const" in branch else None)
            if allowed is None or value in allowed:
                return value
    wanted = set().union(*(_types(b) for b in branches))
    text = value.strip()
    if "integer" in wanted and _INTEGER.fullmatch(text):
        return int(text)
    if "integer" in wanted and "number" not in wanted:
        with contextlib.suppress(ValueError):
            if float(text).is_integer():  # 8.0 as 8
                return int(float(text))
    if "number" in wanted:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in wanted and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if "null" in wanted and text.lower() in _NULLS:
        return None
    return value


def schema_problem(config: Mapping, schema: Mapping) -> tuple[str, str] | None:
    """The most relevant way ``config`` breaks ``schema`` (JSON Schema 2020-12, by
    ``jsonschema``'s ``best_match``) as ``(key, problem)``: the dotted key (``config`` for the
    top level) and one sentence, with the known keys where an unknown one was given. None when
    the config is valid."""
    import jsonschema
    from jsonschema.exceptions import best_match

    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    while error.parent is not None and error.parent.absolute_path == error.absolute_path:
        error = error.parent  # one of several allowed forms: name them all
    key = ".".join(str(part) for part in error.absolute_path) or "config"
    problem = error.message
    if error.validator in ("oneOf", "anyOf"):
        forms = [_describe(branch) for branch in error.schema[error.validator]]
        problem = f"must be {' or '.join(forms)}, got {error.instance!r}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        if known and unknown:
            problem = f"unknown key {unknown[0]!r}; known keys: {', '.join(known)}"
    return key, problem


def _describe(branch: Mapping) -> str:
    """One allowed form of a value, in words (``an integer of at least 2``, ``'auto'``)."""
    if "const" in branch:
        return repr(branch["const"])
    if "enum" in branch:
        return "one of " + ", ".join(repr(v) for v in branch["enum"])
    names = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "null": "null",
        "array": "a list",
        "object": "a mapping",
    }
    text = " or ".join(names.get(kind, kind) for kind in sorted(_types(branch))) or "a value"
    if "minimum" in branch:
        text += f" of at least {branch['minimum']}"
    if "exclusiveMinimum" in branch:
        text += f" above {branch['exclusiveMinimum']}"
    return text


def config_origin(
    key: str, overrides: Mapping, files: list[str], given: Mapping | None = None
) -> str:
    """How a message begins that names the dotted ``key``: where its value came from, then
    the key.

    ``--config: KEY`` when Snakemake's ``--config`` (``overrides``, its mapping of values)
    sets it or a section above it; ``FILES: KEY`` for the config files read (``files``,
    comma-separated; ``config.yaml`` when there are none); ``KEY (default, not set in
    FILES)`` when ``given`` (the config as read, before the schema's defaults were filled
    in) holds neither the key nor a section above it.
    """
    names = ", ".join(dict.fromkeys(files)) or "config.yaml"
    if _holds(overrides, key):
        return f"--config: {key}"
    if given is not None and key != "config" and not _holds(given, key):
        return f"{key} (default, not set in {names})"
    return f"{names}: {key}"


def _holds(config: Mapping, key: str) -> bool:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
