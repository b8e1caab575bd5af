#!/usr/bin/env python3
"""Validates alerts (JSON lines) against published schema data, not against expectations
written in this project.

  validate.py ocsf VERSION FILE...    OCSF: the OCSF server's compiled export of that version, from
                                      the PyPI package ocsf-json-schema (ocsf/<VERSION>.json)
  validate.py ecs VERSION FILE...     ECS: the flat field table of that version (EcsFlat of the npm
                                      package @elastic/ecs), as `cargo xtask setup` dumps it to
                                      $MONITOR_SCHEMA_DIR/ecs-<VERSION>.json (default: the
                                      workspace's target/schemas)
  validate.py native SCHEMA FILE...   the native format: a JSON Schema file (draft 2020-12),
                                      checked with the PyPI package jsonschema
  validate.py batch KIND:ARG=FILE...  several of the above in one run (one interpreter start),
                                      e.g. ocsf:1.8.0=a.jsonl ecs:9.4.0=b.jsonl

Each failure is printed as FILE:LINE: PATH: what is wrong; the exit status is 1 if any line
fails, 2 on a usage problem or unusable schema data, 3 when the schema data is not installed.
The last line says how many documents validated.
"""
import ipaddress
import json
import os
import re
import sys

# Timestamps in ms must fall in this window: seconds or nanoseconds are off by 10^3 or more.
MS_MIN = 946_684_800_000  # 2000-01-01
MS_MAX = 4_102_444_800_000  # 2100-01-01


def profiles_of(attr):
    """The profiles that add an attribute (1.8 lists them, older exports name one)."""
    if attr.get("profiles"):
        return list(attr["profiles"])
    return [attr["profile"]] if attr.get("profile") else []


class Ocsf:
    """An OCSF version's compiled schema: classes, objects, profiles and types."""

    def __init__(self, path):
        with open(path) as f:
            self.s = json.load(f)
        self.version = self.s["version"]
        # 1.8.0 and later: dictionary.types.attributes; before: a top-level `types`.
        if "dictionary" in self.s:
            self.types = self.s["dictionary"]["types"]["attributes"]
        else:
            self.types = self.s["types"]
        self.by_uid = {c["uid"]: c for c in self.s["classes"].values()}

    def base_type(self, t):
        """The JSON-level base of a dictionary type, with its constraints gathered."""
        regex, rng, max_len = None, None, None
        seen = set()
        while t in self.types and t not in seen:
            seen.add(t)
            d = self.types[t]
            regex = regex or d.get("regex")
            rng = rng or d.get("range")
            max_len = max_len or d.get("max_len")
            if "type" not in d:
                break
            t = d["type"]
        return t, regex, rng, max_len

    def check_value(self, v, attr, path, profiles, errors):
        t = attr.get("type")
        if attr.get("is_array"):
            if not isinstance(v, list):
                errors.append(f"{path}: must be an array")
                return
            for i, x in enumerate(v):
                self.check_scalar_or_object(x, attr, f"{path}[{i}]", profiles, errors)
            return
        if isinstance(v, list):
            errors.append(f"{path}: must not be an array ({t})")
            return
        self.check_scalar_or_object(v, attr, path, profiles, errors)

    def check_scalar_or_object(self, v, attr, path, profiles, errors):
        t = attr.get("type")
        if t == "object_t":
            obj = self.s["objects"].get(attr.get("object_type"))
            if obj is None:
                errors.append(f"{path}: unknown object type {attr.get('object_type')}")
            elif not isinstance(v, dict):
                errors.append(f"{path}: must be an object ({attr.get('object_type')})")
            else:
                self.check_object(v, obj, path, profiles, errors)
            return
        base, regex, rng, max_len = self.base_type(t)
        ok = {
            "string_t": lambda x: isinstance(x, str),
            "integer_t": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "long_t": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "float_t": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
            "boolean_t": lambda x: isinstance(x, bool),
            "json_t": lambda x: True,
        }.get(base)
        if ok is None:
            errors.append(f"{path}: unknown type {t}")
            return
        if not ok(v):
            errors.append(f"{path}: {json.dumps(v)[:60]} is not a {t}")
            return
        if regex and isinstance(v, str) and not re.search(regex, v):
            errors.append(f"{path}: {v!r} does not match {t}")
        if rng and isinstance(v, int) and not rng[0] <= v <= rng[1]:
            errors.append(f"{path}: {v} outside {rng}")
        if max_len and isinstance(v, str) and len(v) > max_len:
            errors.append(f"{path}: longer than {max_len}")
        if t == "timestamp_t" and not MS_MIN <= v <= MS_MAX:
            errors.append(f"{path}: {v} is not a time in milliseconds since the epoch")
        enum = attr.get("enum")
        if enum is not None and str(v) not in enum:
            errors.append(f"{path}: {v!r} not in its enum {sorted(enum)}")

    def check_object(self, doc, spec, path, profiles, errors):
        attrs = spec["attributes"]
        for k, v in doc.items():
            p = f"{path}.{k}" if path else k
            a = attrs.get(k)
            if a is None:
                if spec.get("name") != "object":  # `object` (unmapped) takes anything
                    errors.append(f"{p}: not an attribute of {spec.get('name')} in {self.version}")
                continue
            need = profiles_of(a)
            if need and not set(need) & profiles:
                errors.append(
                    f"{p}: belongs to profile {'/'.join(need)}, not listed in metadata.profiles"
                )
            if v is None:
                errors.append(f"{p}: null")
                continue
            self.check_value(v, a, p, profiles, errors)
            # A caption beside an enumerated id must be that id's caption (unless Other).
            sib = a.get("sibling")
            enum = a.get("enum")
            if sib and enum and sib in doc and str(v) in enum and str(v) != "99":
                want = enum[str(v)].get("caption")
                if doc[sib] != want:
                    errors.append(f"{path + '.' if path else ''}{sib}: {doc[sib]!r} is not the caption of {k}={v} ({want!r})")
        for k, a in attrs.items():
            need = profiles_of(a)
            applies = not need or set(need) & profiles
            if a.get("requirement") == "required" and applies and k not in doc:
                errors.append(f"{path + '.' if path else ''}{k}: required, missing")

    def check(self, doc):
        errors = []
        cls = self.by_uid.get(doc.get("class_uid"))
        if cls is None:
            return [f"class_uid: {doc.get('class_uid')!r} is no class of {self.version}"]
        md = doc.get("metadata") or {}
        if md.get("version") != self.version:
            errors.append(f"metadata.version: {md.get('version')!r}, validating against {self.version}")
        profiles = set(md.get("profiles") or [])
        for p in profiles:
            if p not in cls.get("profiles", []):
                errors.append(f"metadata.profiles: {p!r} does not apply to {cls['name']}")
        if doc.get("category_uid") != cls.get("category_uid"):
            errors.append(f"category_uid: {doc.get('category_uid')} is not {cls.get('category_uid')}")
        act = doc.get("activity_id")
        if isinstance(act, int) and doc.get("type_uid") != cls["uid"] * 100 + act:
            errors.append(f"type_uid: {doc.get('type_uid')} is not class_uid*100+activity_id")
        self.check_object(doc, cls, "", profiles, errors)
        return errors


class Ecs:
    """An ECS version's flat field table."""

    STRING = {"keyword", "constant_keyword", "wildcard", "text", "match_only_text"}
    INT = {"long", "integer", "short", "byte", "unsigned_long"}
    FLOAT = {"float", "double", "scaled_float", "half_float"}
    # Vendor fields go here, outside ECS's own names.
    CUSTOM = "monitor"

    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        # Written by setup: {"version": "9.4.0", "fields": <EcsFlat of @elastic/ecs>}.
        self.version = d["version"]
        self.f = d["fields"]

    def leaf(self, v, name, spec, errors):
        t = spec["type"]
        if t in self.STRING:
            ok = isinstance(v, str)
        elif t in self.INT:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif t in self.FLOAT:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif t == "boolean":
            ok = isinstance(v, bool)
        elif t == "date":
            ok = isinstance(v, str) and re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", v)
        elif t == "ip":
            try:
                ipaddress.ip_address(v)
                ok = True
            except (ValueError, TypeError):
                ok = False
        else:
            ok = True
        if not ok:
            errors.append(f"{name}: {json.dumps(v)[:60]} is not a valid {t}")
        allowed = spec.get("allowed_values")
        if allowed and v not in {a["name"] for a in allowed}:
            errors.append(f"{name}: {v!r} is not an allowed value")

    def walk(self, v, name, errors):
        spec = self.f.get(name)
        if name.split(".")[0] == self.CUSTOM:
            return
        if spec is None:
            # Below an object-typed field (labels, container.labels...): keys are free.
            parts = name.split(".")
            for i in range(len(parts) - 1, 0, -1):
                parent = self.f.get(".".join(parts[:i]))
                if parent and parent["type"] in ("object", "flattened"):
                    ot = parent.get("object_type")
                    if ot == "keyword" and not isinstance(v, str):
                        errors.append(f"{name}: values below {parent['flat_name']} are strings")
                    return
            if isinstance(v, dict):
                for k, x in v.items():
                    self.walk(x, f"{name}.{k}", errors)
                return
            errors.append(f"{name}: not a field of ECS {self.version}")
            return
        if spec["type"] in ("object", "flattened"):
            if not isinstance(v, dict):
                errors.append(f"{name}: must be an object")
            else:
                for k, x in v.items():
                    self.walk(x, f"{name}.{k}", errors)
            return
        if spec["type"] == "nested":
            if not isinstance(v, list):
                errors.append(f"{name}: must be an array of objects")
            return
        if isinstance(v, list):
            if "array" not in spec.get("normalize", []):
                errors.append(f"{name}: not an array field")
            for x in v:
                self.leaf(x, name, spec, errors)
        elif isinstance(v, dict):
            errors.append(f"{name}: is a {spec['type']}, not an object")
        else:
            if "array" in spec.get("normalize", []):
                errors.append(f"{name}: must be an array")
            self.leaf(v, name, spec, errors)

    def check(self, doc):
        errors = []
        for k, v in doc.items():
            self.walk(v, k, errors)
        ver = (doc.get("ecs") or {}).get("version")
        if ver != self.version:
            errors.append(f"ecs.version: {ver!r}, validating against {self.version}")
        for required in ("@timestamp", "ecs.version"):
            node = doc
            for part in required.split(".") if required != "@timestamp" else [required]:
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                errors.append(f"{required}: required, missing")
        return errors


class Native:
    """The native format's own JSON Schema (checked with the jsonschema package)."""

    def __init__(self, path):
        import jsonschema

        with open(path) as f:
            schema = json.load(f)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        self.v = cls(schema)

    def check(self, doc):
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in self.v.iter_errors(doc)
        ]


def schema_dir():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../target/schemas")
    return os.environ.get("MONITOR_SCHEMA_DIR", os.path.normpath(default))


class MissingData(Exception):
    """The schema data is not installed here (`cargo xtask setup` installs it)."""


def existing(path):
    if not os.path.exists(path):
        raise MissingData(f"{path} does not exist (cargo xtask setup)")
    return path


def ocsf_export(version):
    try:
        import ocsf_json_schema
    except ImportError as e:
        raise MissingData("the PyPI package ocsf-json-schema is not installed (cargo xtask setup)") from e
    return existing(os.path.join(os.path.dirname(ocsf_json_schema.__file__), "ocsf", f"{version}.json"))


def batch(specs):
    worst = 0
    for spec in specs:
        kind, _, rest = spec.partition(":")
        arg, _, path = rest.partition("=")
        if not kind or not arg or not path:
            print(f"batch item {spec!r}: expected KIND:ARG=FILE", file=sys.stderr)
            return 2
        rc = main(["validate.py", kind, arg, path])
        worst = rc if rc in (2, 3) else max(worst, rc)
        if rc in (2, 3):
            return rc
    return worst


def main(argv):
    if len(argv) >= 3 and argv[1] == "batch":
        return batch(argv[2:])
    if len(argv) < 4 or argv[1] not in ("ocsf", "ecs", "native"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[1] == "ocsf":
            v = Ocsf(ocsf_export(argv[2]))
        elif argv[1] == "ecs":
            v = Ecs(existing(os.path.join(schema_dir(), f"ecs-{argv[2]}.json")))
        else:
            try:
                v = Native(existing(argv[2]))
            except ImportError as e:
                raise MissingData("the PyPI package jsonschema is not installed (cargo xtask setup)") from e
    except MissingData as e:
        print(f"schema data {argv[2]}: {e}", file=sys.stderr)
        return 3
    except (OSError, KeyError, ValueError) as e:
        print(f"schema data {argv[2]}: unusable: {e!r}", file=sys.stderr)
        return 2
    n, bad = 0, 0
    for path in argv[3:]:
        with open(path) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                try:
                    doc = json.loads(line)
                except ValueError as e:
                    print(f"{path}:{i}: not JSON: {e}")
                    bad += 1
                    continue
                errors = v.check(doc) if isinstance(doc, dict) else ["<root>: not an object"]
                if errors:
                    bad += 1
                    for e in errors:
                        print(f"{path}:{i}: {e}")
    print(f"{argv[1]} {getattr(v, 'version', '')}: {n - bad} of {n} documents valid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
