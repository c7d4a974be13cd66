"""The supply-chain parts without a registry: the SBOM from an image's listing (valid SPDX 2.3 by
spdx-tools), native components with the sources the recipes declare, the provenance statement (as
sigstore's own model reads it for keyless signing), key signatures and their rejections, the tag
history, and reproducible layers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from runner.compose.plan import make_plan
from runner.model.errors import UserError
from runner.model.targets import Selection
from runner.release import ledger, reproducible, sbom, slsa
from runner.release.signing import KeySigner, Trust, Unverified, keygen
from runner.release.verification import members

LISTING = """@@runner-sbom os-release
ID=ubuntu
VERSION_ID="22.04"
@@runner-sbom dpkg
Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.35-0ubuntu3.8
Description: GNU C Library
 continued description line

Package: removed-one
Status: deinstall ok config-files
Version: 1.0

@@runner-sbom dist /usr/local/lib/python3.12/dist-packages/vllm-0.14.1.dist-info
Metadata-Version: 2.1
Name: vllm
Version: 0.14.1

@@runner-sbom dist /usr/local/lib/python3.12/dist-packages/Torch-2.9.0.dist-info
Metadata-Version: 2.1
Name: torch
Version: 2.9.0+cu128
"""


def _leaf(project, platform="linux/amd64"):
    sel = Selection(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")
    return next(x for x in make_plan(sel.apply(project.targets), project.recipes).leaves if x.platform == platform)


def test_the_listing_becomes_installed_packages_only():
    inv = sbom.parse(LISTING)
    assert inv.os_release == {"ID": "ubuntu", "VERSION_ID": "22.04"}
    assert inv.debs == [{"name": "libc6", "version": "2.35-0ubuntu3.8", "arch": "amd64", "source": "glibc"}]
    assert [(d["name"], d["version"]) for d in inv.dists] == [("vllm", "0.14.1"), ("torch", "2.9.0+cu128")]


def test_native_components_carry_the_sources_the_recipe_fetches(project):
    by_name = {n.name: n for n in sbom.native_components(_leaf(project, "linux/arm64").stage)}
    assert by_name["HPC-X"].source.endswith("hpcx-v2.24.1-gcc-inbox-ubuntu22.04-cuda12-aarch64.tbz")
    assert by_name["GDRCopy"].source == "git+https://github.com/NVIDIA/gdrcopy.git@v2.5.1"  # from a build stage
    assert by_name["AWS EFA"].version == "1.44.0"


def _document(project, tmp_path: Path) -> tuple[dict, Path]:
    leaf = _leaf(project)
    doc = sbom.document(sbom.parse(LISTING), sbom.native_components(leaf.stage),
                        image="docker.io/gpustack/runner:cuda12.8-vllm0.14.1-linux-amd64", digest="sha256:" + "ab" * 32,
                        platform="linux/amd64", created="2026-01-31T00:00:00Z", namespace_base="https://github.com/gpustack/runner")
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(sbom.dumps(doc))
    return doc, path


def test_the_sbom_is_valid_spdx_and_the_same_for_the_same_image(project, tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc, path = _document(project, tmp_path)
    assert validate_full_spdx_document(parse_file(str(path))) == []
    assert sbom.counts(doc) == {"deb": 1, "python": 2, "native": 5}
    assert sbom.described_digest(doc) == "sha256:" + "ab" * 32
    purls = {p["name"]: p["externalRefs"][0]["referenceLocator"] for p in doc["packages"] if "externalRefs" in p}
    assert purls["libc6"] == "pkg:deb/ubuntu/libc6@2.35-0ubuntu3.8?arch=amd64&distro=ubuntu-22.04"
    assert purls["torch"] == "pkg:pypi/torch@2.9.0%2Bcu128"
    assert sbom.dumps(doc) == sbom.dumps(_document(project, tmp_path)[0])  # no clock in it


def _statement(project) -> dict:
    leaf = _leaf(project)
    facts = slsa.Facts(target=leaf.target, platform=leaf.platform, leaf=leaf.stage,
                       image="docker.io/gpustack/runner:cuda12.8-vllm0.14.1-linux-amd64", digest="sha256:" + "cd" * 32,
                       build_info={"source": "https://github.com/gpustack/runner", "revision": "abc123",
                                   "created": "2026-01-31T00:00:00Z"},
                       bases={leaf.target.base_image: "sha256:" + "ef" * 32}, engine="docker", engine_version="docker 20.10",
                       smoke=[{"name": "version", "passed": True, "cached": False}], sbom_digest="sha256:" + "01" * 32)
    return slsa.statement(facts)


def test_the_provenance_reads_as_in_toto_and_slsa_and_as_sigstore_signs_it(project):
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from sigstore import dsse

    stmt = _statement(project)
    payload = slsa.dumps(stmt)
    Statement.copy_from_pb(json_format.Parse(payload, statement_pb2.Statement())).validate()
    json_format.ParseDict(stmt["predicate"], provenance_pb2.Provenance())
    signed_as = dsse.Statement(payload)  # what keyless signing hands Sigstore (its model validates it)
    assert signed_as._inner.predicate_type == slsa.PREDICATE_TYPE
    assert slsa.subjects(stmt) == {"sha256:" + "cd" * 32} and slsa.sbom_digest(stmt) == "sha256:" + "01" * 32
    stages = stmt["predicate"]["buildDefinition"]["internalParameters"]["stages"]
    assert [s["kind"] for s in stages][:2] == ["base", "runtime"] and all(len(s["key"]) == 64 for s in stages)


def test_signatures_are_checked_and_each_failure_says_why(tmp_path):
    private, public = keygen(tmp_path / "ours")
    _, other = keygen(tmp_path / "other")
    media_type, signed = KeySigner(private.read_bytes()).sign(b'{"_type": "x"}', slsa.PAYLOAD_TYPE)
    assert Trust.from_args([public], "", "").open(media_type, signed)[1] == b'{"_type": "x"}'
    with pytest.raises(Unverified, match="not signed by the given key"):
        Trust.from_args([other], "", "").open(media_type, signed)
    forged = json.loads(signed)
    forged["payload"] = "eyJfdHlwZSI6ICJ5In0="  # another payload under the same signature
    with pytest.raises(Unverified, match="not signed by the given key"):
        Trust.from_args([public], "", "").open(media_type, json.dumps(forged).encode())
    with pytest.raises(Unverified, match="unsigned: the envelope has no signature"):
        Trust.from_args([public], "", "").open(media_type, json.dumps({**forged, "signatures": []}).encode())
    with pytest.raises(Unverified, match="no --identity"):
        Trust.from_args([public], "", "").open("application/vnd.dev.sigstore.bundle.v0.3+json", b"{}")
    with pytest.raises(UserError, match="not an unencrypted PEM private key"):
        KeySigner(b"not a key")
    with pytest.raises(UserError, match="never overwritten"):
        keygen(tmp_path / "ours")
    assert oct(private.stat().st_mode & 0o777) == "0o600"


def test_the_tag_history_keeps_every_change_of_a_final_tag(tmp_path):
    from runner.model.catalog import CatalogFile

    book = CatalogFile(tmp_path / "catalog.json")
    pins = [ledger.Pin(registry="r", index=f"sha256:{n}", platforms={"linux/amd64": f"sha256:p{n}"}) for n in "12"]
    assert ledger.update(book, lambda l: [i for i in ["ns/runner:t"] if ledger.change(l, i, pins[0], "first promotion")])
    assert not ledger.update(book, lambda l: [i for i in ["ns/runner:t"] if ledger.change(l, i, pins[0], "again")])
    ledger.update(book, lambda l: [i for i in ["ns/runner:t"] if ledger.change(l, i, pins[1], "polished re-push")])
    assert ledger.record_removals(book, ["ns/runner:t", "ns/runner:never-pinned"], "discarded") == ["ns/runner:t"]
    assert [(c["old"], c["new"], c["reason"]) for c in ledger.history(ledger.path_for(book.path), "t")] == [
        (None, "sha256:1", "first promotion"), ("sha256:1", "sha256:2", "polished re-push"), ("sha256:2", None, "discarded")]
    assert not (tmp_path / "catalog.json").exists()  # the consumers' file is not touched
    (tmp_path / "catalog.digests.json").write_text('{"images": [1]}')
    with pytest.raises(UserError, match="catalog.digests.json: not a catalog digests file"):
        ledger.history(tmp_path / "catalog.digests.json", "t")


def test_a_polished_targets_change_is_a_polished_re_push(project):
    polished = next(t for t in project.targets if t.status == "polished")
    active = next(t for t in project.targets if t.status == "active")
    why = ledger.reasons(project.targets)
    assert (why(polished.tag, True), why(polished.tag, False)) == ("polished re-push", "first promotion")
    assert why(active.tag, True) == "re-push" and ledger.reasons(project.targets, "CVE fix")(active.tag, True) == "CVE fix"


def test_members_of_an_index_leave_attestation_entries_out():
    body = json.dumps({"manifests": [
        {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:b", "platform": {"os": "unknown", "architecture": "unknown"}}]}).encode()
    assert members(body, "sha256:i") == [("linux/amd64", "sha256:a")]
    assert members(b'{"layers": []}', "sha256:m") == [("", "sha256:m")]


def _layer(entries: list[tuple[str, int]], path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, mtime in entries:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            elif name == "opt/link":
                info.type, info.linkname = tarfile.LNKTYPE, "opt/file"
            else:
                info.size = 5
            info.mtime = mtime
            info.pax_headers = {"atime": str(mtime)}
            tar.addfile(info, io.BytesIO(b"hello") if info.isreg() else None)
    return path


def test_layers_with_other_times_and_order_become_the_same_bytes(tmp_path):
    a = _layer([("opt/", 1_900_000_000), ("opt/link", 1_900_000_001), ("opt/file", 1_900_000_002)], tmp_path / "a.tar")
    b = _layer([("opt/file", 1_950_000_000), ("opt/", 1_950_000_003), ("opt/link", 1_950_000_009)], tmp_path / "b.tar")
    epoch = reproducible.epoch_of("2026-01-31T00:00:00Z")
    digest_a = reproducible.normalize_layer(a, tmp_path / "na.tar", epoch)
    assert digest_a == reproducible.normalize_layer(b, tmp_path / "nb.tar", epoch)
    with tarfile.open(tmp_path / "na.tar") as tar:
        assert [m.name for m in tar] == ["opt", "opt/file", "opt/link"]  # a hard link after its target
        assert {m.mtime for m in tar} == {epoch}
        tar.extractall(tmp_path / "out", **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    assert (tmp_path / "out" / "opt" / "link").read_text() == "hello"
    old = _layer([("opt/file", 0)], tmp_path / "old.tar")  # older than the epoch: kept as it is
    reproducible.normalize_layer(old, tmp_path / "nold.tar", epoch)
    with tarfile.open(tmp_path / "nold.tar") as tar:
        assert [m.mtime for m in tar] == [0]


def test_signing_problems_stop_publish_before_anything_is_built(tmp_path, monkeypatch, capsys):
    from runner.cli import main

    (tmp_path / "bad.pem").write_text("not a key")
    monkeypatch.setenv("REGISTRY_PASSWORD", "x")
    monkeypatch.setenv("REGISTRY_USERNAME", "ci")
    assert main(["publish", "--registry", "registry.example.com", "--sign-key", str(tmp_path / "bad.pem"),
                 "--backend", "cuda", "--service-version", "0.14.1"]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert main(["publish", "--registry", "registry.example.com", "--sign-key", str(tmp_path / "missing.pem"),
                 "--backend", "cuda"]) == 2
    assert "cannot read the signing key" in capsys.readouterr().err
    assert main(["verify", "registry.example.com/gpustack/runner:x"]) == 2  # no --key, no --identity
    assert "verify needs whom to trust" in capsys.readouterr().err


def test_keyless_signing_asks_githubs_token_service_when_it_signs():
    """Sigstore's own services cannot be reached here (keyless signing and its check: not checked
    here); the token request CI relies on and the names called in the pinned sigstore can be."""
    import inspect
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.sign import Signer, SigningContext
    from sigstore.verify import Verifier, policy

    from runner.release.signing import KeylessSigner

    seen: list[tuple[str, str]] = []

    class TokenService(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps({"value": "oidc-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), TokenService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/token?api-version=2.0"
        assert KeylessSigner("", url, "request-secret").identity_token() == "oidc-token"
    finally:
        server.shutdown()
    assert seen == [("/token?api-version=2.0&audience=sigstore", "bearer request-secret")]
    assert KeylessSigner("given").identity_token() == "given"
    assert callable(SigningContext.from_trust_config) and callable(ClientTrustConfig.production)
    assert "cache" in inspect.signature(SigningContext.signer).parameters and callable(Signer.sign_dsse)
    assert {"identity", "issuer"} <= set(inspect.signature(policy.Identity).parameters)
    assert callable(Verifier.production) and callable(Verifier.verify_dsse) and callable(Bundle.from_json)
