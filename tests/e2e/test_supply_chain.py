"""What a published image proves, on the real registry (Docker's registry 2.8, which has no referrers
API: every artifact is found through the referrers tag scheme `sha256-<hex>`): an SBOM validated by
spdx-tools and a provenance verified by in-toto's reference implementation, attached to each image
and its index; `runner verify` accepting it and rejecting a wrong key, a tampered SBOM and a moved
tag; mirrors keeping the artifacts; the catalog's digests and tag history; discard and prune
removing the artifacts of what they delete. Tests run in file order in namespaces of their own."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import anyio
import pytest

from runner.release import referrers
from runner.release.attest import PROVENANCE_TYPE, SBOM_TYPE
from runner.release.registry import Registry

pytestmark = pytest.mark.e2e

NS, MIRROR = "sc", "sc-mirror"
TAGS = ("demo1.0-echo0.1.0", "demo1.0-echo0.2.0")
PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def keys(e2e) -> dict[str, Path]:
    for who in ("ours", "other"):
        r = e2e.runner("keygen", str(e2e.root / "keys" / who))
        assert r.returncode == 0, r.stderr
    folder = e2e.root / "keys"
    return {"key": folder / "ours" / "signing.key", "pub": folder / "ours" / "signing.pub",
            "other": folder / "other" / "signing.pub"}


def _call(e, fn, *args):
    async def main():
        async with Registry(e.registry, e.username, e.password) as reg:
            return await fn(reg, *args)

    return anyio.run(main)


def _ref(e, tag: str, ns: str = NS) -> str:
    return f"{e.registry}/{ns}/runner:{tag}"


def _catalog(e) -> Path:
    return e.root / "sc-catalog" / "catalog.json"


def _tags(e, ns: str = NS) -> list[str]:
    return _call(e, lambda reg: reg.tags(f"{ns}/runner"))


def _manifest(e, tag: str, ns: str = NS):
    return _call(e, lambda reg: reg.manifest(f"{ns}/runner", tag))


def _artifacts(e, digest: str, ns: str = NS) -> list[referrers.Found]:
    return _call(e, lambda reg: referrers.read(reg, f"{ns}/runner", digest))


def _verify(e, *args: str, ns: str = NS, tag: str = TAGS[0]):
    return e.runner("verify", _ref(e, tag, ns), "--insecure", *args)


def test_publish_attaches_a_valid_sbom_and_a_signed_provenance_to_each_image_and_index(e2e, keys, tmp_path):
    from google.protobuf import json_format
    from in_toto.models.metadata import Envelope, Metadata
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", NS, "--sign-key", str(keys["key"]),
                   "--report", str(e2e.root / "sc-publish.json"))
    assert r.returncode == 1 and "Traceback" not in r.stderr  # the fixture's broken arm64 0.3.0 publishes nothing
    report = json.loads((e2e.root / "sc-publish.json").read_text())
    notes = report["attestations"]
    assert len([n for n in notes if "SBOM (" in n and "provenance signed by key file signing.key" in n]) == 4, notes
    published = {p["tag"]: p for p in report["published"]}
    key = _in_toto_key(keys["pub"])
    for platform in PLATFORMS:
        digest = published[TAGS[0]]["platforms"][platform]
        found = {a.artifact_type: a for a in _artifacts(e2e, digest)}
        assert set(found) == {SBOM_TYPE, PROVENANCE_TYPE}
        # the SBOM: valid SPDX 2.3 by spdx-tools, made from inside the image
        path = tmp_path / f"{platform.replace('/', '-')}.spdx.json"
        path.write_bytes(found[SBOM_TYPE].data)
        assert validate_full_spdx_document(parse_file(str(path))) == []
        doc = json.loads(found[SBOM_TYPE].data)
        packages = {(p["SPDXID"].split("-")[1], p["name"]): p for p in doc["packages"]}
        assert {("deb", "busybox-static"), ("deb", "tini"), ("native", "demotool")} <= set(packages)
        assert packages[("python", "echo-serve")]["versionInfo"] == "0.1.0"
        arch = platform.split("/")[1]
        deb = packages[("deb", "tini")]["externalRefs"][0]["referenceLocator"]
        assert deb.startswith("pkg:deb/debian/tini@") and f"arch={arch}" in deb
        assert packages[("Image", "runner")]["checksums"][0]["checksumValue"] == digest.removeprefix("sha256:")
        # the provenance: its DSSE signature checked by in-toto's reference implementation
        envelope = Metadata.from_dict(json.loads(found[PROVENANCE_TYPE].data))
        assert isinstance(envelope, Envelope)
        envelope.verify_signature(key)
        statement = json.loads(envelope.payload)
        Statement.copy_from_pb(json_format.Parse(envelope.payload, statement_pb2.Statement())).validate()
        json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())  # SLSA v1, no unknown field
        assert statement["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
        build = statement["predicate"]["buildDefinition"]
        assert build["externalParameters"]["target"]["tag"] == TAGS[0]
        assert build["externalParameters"]["target"]["platform"] == platform
        base = e2e.docker("image", "inspect", "--format", "{{.Id}}", f"runner-fixture/demo-base:1.0.0-{arch}").stdout.strip()
        deps = {d["uri"]: d["digest"] for d in build["resolvedDependencies"]}
        assert deps[f"oci://runner-fixture/demo-base:1.0.0-{arch}"] == {"sha256": base.removeprefix("sha256:")}
        assert any(u.startswith("git+") for u in deps)  # the recipe commit
        assert [s["kind"] for s in build["internalParameters"]["stages"]] == ["base", "runtime", "service"]
        run = statement["predicate"]["runDetails"]
        byproducts = {b["name"]: b for b in run["byproducts"]}
        assert byproducts["sbom"]["digest"]["sha256"] == referrers.sha256(found[SBOM_TYPE].data).removeprefix("sha256:")
        assert byproducts["smoke"]["annotations"]["passed"] is True
        assert run["builder"]["version"]["engineVersion"].startswith("docker 20.10")
    # the -dev index carries its members' artifacts, found through its referrers tag
    index = published[TAGS[0]]["digest"]
    assert referrers.fallback_tag(index) in _tags(e2e)
    on_index = _artifacts(e2e, index)
    assert sorted((a.annotations[referrers.PLATFORM], a.artifact_type) for a in on_index) == sorted(
        (p, k) for p in PLATFORMS for k in (SBOM_TYPE, PROVENANCE_TYPE))
    assert not [t for t in _tags(e2e) if t.startswith("demo1.0-echo0.3.0")]
    # publishing again changes nothing
    before = {t: _manifest(e2e, t).digest for t in _tags(e2e)}
    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", NS, "--service-version", "0.1.0",
                   "--sign-key", str(keys["key"]), "--report", str(e2e.root / "sc-again.json"))
    assert r.returncode == 0, r.stderr
    assert all("attested already" in n for n in json.loads((e2e.root / "sc-again.json").read_text())["attestations"])
    assert {t: _manifest(e2e, t).digest for t in _tags(e2e)} == before


def _in_toto_key(pub: Path) -> dict:
    """The public key in the dict form in-toto's metadata API takes."""
    from runner.release.signing import public_key

    key = public_key(pub)
    return {"keyid": key.keyid, **key.to_dict()}


def test_verify_accepts_the_promoted_image_and_checks_it_against_the_catalog(e2e, keys):
    _catalog(e2e).parent.mkdir(exist_ok=True)
    r = e2e.runner("promote", "--registry", e2e.registry, "--namespace", NS, "--insecure", "--catalog",
                   str(_catalog(e2e)), "--skip-missing")
    assert r.returncode == 0, r.stderr
    r = _verify(e2e, "--key", str(keys["pub"]), "--catalog", str(_catalog(e2e)))
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[2] for line in r.stdout.splitlines() if line.startswith("verified")) == list(PLATFORMS)
    assert "smoke passed" in r.stdout and "python" in r.stdout
    assert _verify(e2e, "--key", str(keys["pub"]), tag=f"{TAGS[0]}-dev").returncode == 0
    # the digests live beside the catalog; catalog.json itself keeps the shape consumers parse
    pins = json.loads((_catalog(e2e).parent / "catalog.digests.json").read_text())["images"]
    final = _manifest(e2e, TAGS[0])
    assert pins[f"{NS}/runner:{TAGS[0]}"]["index"] == final.digest
    assert set(pins[f"{NS}/runner:{TAGS[0]}"]["platforms"]) == set(PLATFORMS)
    from runner.model.catalog import load

    assert {r.docker_image for r in load(_catalog(e2e))} == {f"{NS}/runner:{t}" for t in TAGS}


def test_verify_rejects_a_wrong_key_and_a_missing_trust(e2e, keys):
    r = _verify(e2e, "--key", str(keys["other"]))
    assert r.returncode == 2 and "not signed by the given key" in r.stderr and "Traceback" not in r.stderr
    r = _verify(e2e)
    assert r.returncode == 2 and "--key PUBLIC.pem" in r.stderr


def _mirror(e, version: str):
    return e.runner("mirror", "--registry", e.registry, "--namespace", NS, "--to", f"{e.registry}/{MIRROR}",
                    "--insecure", "--service-version", version, MIRROR_USERNAME=e.username, MIRROR_PASSWORD=e.password)


def test_mirror_copies_final_tags_by_digest_with_their_artifacts(e2e, keys):
    for version in ("0.1.0", "0.2.0"):
        r = _mirror(e2e, version)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["changed"]
    for tag in TAGS:
        assert _manifest(e2e, tag, MIRROR).digest == _manifest(e2e, tag).digest
        assert _verify(e2e, "--key", str(keys["pub"]), ns=MIRROR, tag=tag).returncode == 0
    assert not json.loads(_mirror(e2e, "0.1.0").stdout)[0]["changed"]  # again: nothing to copy


def test_verify_mirror_lists_a_missing_tag(e2e):
    _call(e2e, lambda reg: reg.delete_tag(f"{MIRROR}/runner", TAGS[1]))
    r = e2e.runner("verify", "--mirror", f"{e2e.registry}/{MIRROR}", "--registry", e2e.registry, "--namespace", NS,
                   "--insecure", "--format", "json", MIRROR_USERNAME=e2e.username, MIRROR_PASSWORD=e2e.password)
    assert r.returncode == 2, r.stderr
    rows = {row["tag"]: row for row in json.loads(r.stdout)}
    assert rows[TAGS[0]]["ok"] and rows[TAGS[0]]["mirrors"] == {f"{e2e.registry}/{MIRROR}/runner": "same"}
    assert rows[TAGS[1]]["mirrors"] == {f"{e2e.registry}/{MIRROR}/runner": "missing"}
    assert f"{TAGS[1]}: {e2e.registry}/{MIRROR}/runner missing" in r.stderr


def test_verify_rejects_a_tampered_sbom_and_a_moved_tag(e2e, keys):
    # a moved tag: the mirror's TAGS[0] now names TAGS[1]'s (signed) index
    source = _manifest(e2e, TAGS[1])
    _call(e2e, lambda reg: reg.put_manifest(f"{MIRROR}/runner", TAGS[0], source.body, source.media_type))
    r = _verify(e2e, "--key", str(keys["pub"]), ns=MIRROR)
    assert r.returncode == 2 and f"moved tag: the signed provenance is for {TAGS[1]}" in r.stderr, r.stderr
    # ... and against the catalog's pin, on the source
    original = _manifest(e2e, TAGS[0])
    _call(e2e, lambda reg: reg.put_manifest(f"{NS}/runner", TAGS[0], source.body, source.media_type))
    try:
        r = _verify(e2e, "--key", str(keys["pub"]), "--catalog", str(_catalog(e2e)))
        assert r.returncode == 2 and f"the catalog pins {original.digest}" in r.stderr, r.stderr
    finally:
        _call(e2e, lambda reg: reg.put_manifest(f"{NS}/runner", TAGS[0], original.body, original.media_type))
    # a tampered SBOM: one more package slipped into the copy the mirror's amd64 image carries
    _call(e2e, lambda reg: reg.put_manifest(f"{MIRROR}/runner", TAGS[0], original.body, original.media_type))
    amd64 = json.loads(original.body)["manifests"][0]["digest"]
    sbom = next(a for a in _artifacts(e2e, amd64, MIRROR) if a.artifact_type == SBOM_TYPE)
    doc = json.loads(sbom.data)
    doc["packages"].append({**doc["packages"][-1], "SPDXID": "SPDXRef-deb-innocent", "name": "innocent"})
    subject = _manifest(e2e, amd64, MIRROR)
    _call(e2e, lambda reg: referrers.attach(reg, f"{MIRROR}/runner", subject,
                                           referrers.Artifact(SBOM_TYPE, SBOM_TYPE, json.dumps(doc).encode())))
    r = _verify(e2e, "--key", str(keys["pub"]), ns=MIRROR)
    assert r.returncode == 2 and "tampered SBOM" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_polished_re_push_is_recorded_in_the_tag_history(e2e, keys):
    first = _manifest(e2e, TAGS[0]).digest
    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", NS, "--service-version", "0.1.0",
                   "--revision", "polished-1", "--sign-key", str(keys["key"]))
    assert r.returncode == 0, r.stderr
    r = e2e.runner("promote", "--registry", e2e.registry, "--namespace", NS, "--insecure", "--service-version",
                   "0.1.0", "--catalog", str(_catalog(e2e)), "--reason", "polished: the greeting fix")
    assert r.returncode == 0, r.stderr
    second = _manifest(e2e, TAGS[0]).digest
    assert second != first
    r = e2e.runner("catalog", "--history", TAGS[0], "--file", str(_catalog(e2e)), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [(c["old"], c["new"], c["reason"]) for c in json.loads(r.stdout)] == [
        (None, first, "first promotion"), (first, second, "polished: the greeting fix")]
    assert _verify(e2e, "--key", str(keys["pub"]), "--catalog", str(_catalog(e2e))).returncode == 0
    r = e2e.runner("catalog", "--history", TAGS[0], "--file", str(_catalog(e2e)))
    assert f"{first} -> {second}  polished: the greeting fix" in r.stdout


def _fallback_subjects(e) -> set[str]:
    return {t.replace("-", ":", 1) for t in _tags(e) if referrers.is_fallback_tag(t)}


def test_discard_and_prune_remove_the_artifacts_of_what_they_delete(e2e, keys):
    discarded = _manifest(e2e, TAGS[1])
    members = {m["digest"] for m in json.loads(discarded.body)["manifests"]}
    assert {discarded.digest, *members} <= _fallback_subjects(e2e)
    r = e2e.runner("discard", "--registry", e2e.registry, "--namespace", NS, "--insecure", "--service-version",
                   "0.2.0", "--catalog", str(_catalog(e2e)))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["artifacts_deleted"]) >= 6  # 2 per member, 4 on the index
    assert not {discarded.digest, *members} & _fallback_subjects(e2e)
    history = json.loads(e2e.runner("catalog", "--history", TAGS[1], "--file", str(_catalog(e2e)),
                                    "--format", "json").stdout)
    assert (history[-1]["old"], history[-1]["new"], history[-1]["reason"]) == (discarded.digest, None, "discarded")
    # prune: the -dev and single-arch tags go, and the artifacts of the re-pushed tag's old images
    r = e2e.runner("prune", "--registry", e2e.registry, "--namespace", NS, "--insecure", "--intermediates")
    assert r.returncode == 0, r.stderr
    final = _manifest(e2e, TAGS[0])
    reachable = {final.digest, *(m["digest"] for m in json.loads(final.body)["manifests"])}
    assert _fallback_subjects(e2e) == reachable  # the final tag's artifacts stay, nothing else's
    assert _verify(e2e, "--key", str(keys["pub"])).returncode == 0
    assert not [a for d in reachable for a in _artifacts(e2e, d) if not a.data]


def test_the_provenance_payload_is_base64_in_a_dsse_envelope(e2e):
    """Anyone can read it with any DSSE tool: payloadType, base64 payload, signatures with key ids."""
    final = _manifest(e2e, TAGS[0])
    envelope = json.loads(next(a for a in _artifacts(e2e, final.digest) if a.artifact_type == PROVENANCE_TYPE).data)
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and envelope["signatures"][0]["keyid"]
    assert json.loads(base64.b64decode(envelope["payload"]))["_type"] == "https://in-toto.io/Statement/v1"
