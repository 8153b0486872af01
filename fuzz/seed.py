#!/usr/bin/env python3
"""Seeds each fuzz target's corpus from the contracts' examples and the conformance corpus, and
writes the dictionaries of element and member names. Run from anywhere; writes into fuzz/seeds/
(the starting points, not committed) and fuzz/dict/ (committed). The committed corpus in
fuzz/corpus/ is what `run-all.sh` minimised from these and what the fuzzer found."""

import hashlib
import json
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
FIXTURES = ROOT / "tests/fixtures/contracts"
SCHEMAS = ROOT / "schemas"

# The order of brygga::fuzzing::AF_SCHEMAS: the first byte of an af_json input picks one.
AF_SCHEMAS = [
    "arbetssokande-status-response",
    "ersattningsbeslut-response",
    "handlingsplan-response",
    "aktivitetsplan-response",
    "handelser-request",
    "handelse",
    "arbetssokande-status-request",
    "aktivitetsplan-request",
    "health-response",
    "token-response",
]


def put(target, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    xml = sorted((FIXTURES / "kommun").glob("*.xml")) + sorted(
        (SCHEMAS / "kommun/v1/examples").glob("*.xml")
    )
    for f in xml:
        b = f.read_bytes()
        put("xml_reader", b)
        put("soap_request", b)
        put("soap_response", b)
    for schema_dir in sorted((FIXTURES / "af").iterdir()):
        name = schema_dir.name
        for f in sorted(schema_dir.glob("*.json")):
            b = f.read_bytes()
            if name in AF_SCHEMAS:
                put("af_json", bytes([AF_SCHEMAS.index(name)]) + b)
            if name == "arbetssokande-status-response":
                put("round_trip", b)
    for f in sorted((SCHEMAS / "af/v1/examples").glob("*.json")):
        b = f.read_bytes()
        # arbetssokande-status.response.json is an arbetssokande-status-response, and so on.
        schema = f.name.removesuffix(".json").replace(".", "-")
        if schema.startswith("handelse-"):
            schema = "handelse"
        if schema in AF_SCHEMAS:
            put("af_json", bytes([AF_SCHEMAS.index(schema)]) + b)
        if schema == "arbetssokande-status-response":
            put("round_trip", b)
    for s in [
        "198507099805", "19850709-9805", "850709-9805", "19850709+9805", "197805129819",
        "200112249826", "212000-0142", "162120000142", "0180", "1480", "2581",
        "SE2120000142-HL01", "SE2321000016-4HK5", "2026-11-25", "2026-11-25+01:00",
        "2026-11-25T10:00:00Z", "12.5", "x850709 - 9805y", "EB-2026-004711", "19850769-9812",
    ]:
        put("identifiers", s.encode())
    claims = {
        "iss": "https://idp.stockholm.example/", "aud": "urn:se:brygga:kommun:v1",
        "sub": "SE2120000142-HL01", "kommunkod": "0180", "syfte": "EKB-BESLUT",
        "iat": 1764000000, "nbf": 1764000000, "exp": 4102444800, "jti": "x",
        "enhet": "SE2120000142-EKB1", "funktion": "Handläggare",
    }
    for pick in range(4):
        put("jwt", bytes([pick]) + json.dumps(claims).encode())
    put("jwt", b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    for s in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nrojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra\nk=198507099805",
    ]:
        put("trace_context", s.encode())
    put("config", (ROOT / "config/example.toml").read_bytes())
    put("config", b"[gateway]\nsystem_id = \"x\"\n")
    # An audit export and a JSON extract of the example chain, when the demo left one.
    for f in sorted((FUZZ / "seed-inputs").glob("*")) if (FUZZ / "seed-inputs").exists() else []:
        put("audit_export", f.read_bytes())
    put("audit_export", b'{"seq":0,"entry":{},"prev":"0","hash":"x"}\n{"checkpoint":{"seq":1,"jws":"a.b.c"}}\n')

    # Dictionaries: the XSD's element names, the JSON Schemas' member names and values.
    xsd = (SCHEMAS / "kommun/v1/brygga-kommun-v1.xsd").read_text()
    names = sorted(set(re.findall(r'name="([A-Za-z]+)"', xsd)))
    words = [f'"<k:{n}>"' for n in names] + [f'"</k:{n}>"' for n in names] + [
        '"<soap:Envelope xmlns:soap=\\"http://schemas.xmlsoap.org/soap/envelope/\\" xmlns:k=\\"urn:se:brygga:kommun:v1\\">"',
        '"<soap:Body>"', '"</soap:Body>"', '"<soap:Header>"', '"mustUnderstand=\\"1\\""',
        '"<?xml version=\\"1.0\\"?>"', '"<!DOCTYPE"', '"&amp;"', '"<![CDATA["', '"xmlns"',
    ]
    (FUZZ / "dict").mkdir(exist_ok=True)
    (FUZZ / "dict/soap.dict").write_text("\n".join(words) + "\n")
    members, values = set(), set()
    for f in sorted((SCHEMAS / "af/v1").glob("*.schema.json")):
        text = f.read_text()
        members.update(re.findall(r'"([a-zA-Z]+)":\s*\{', text))
        values.update(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', text))
    words = [f'"\\"{m}\\":"' for m in sorted(members)] + [f'"\\"{v}\\""' for v in sorted(values)]
    (FUZZ / "dict/json.dict").write_text("\n".join(words) + "\n")


if __name__ == "__main__":
    main()
