"""The module's supply-chain functions, `verify` on the Runner object, `mirror` and `digests` chained on
`with-registry`: the same runner.release code as `runner verify|mirror`, in the function's own process
(registry reads and writes are never execs, so no answer comes from the engine's cache and no
credential lands in a layer)."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, dag, function

from runner.dagger.args import Insecure, OptPassword
from runner.model.errors import UserError


class SupplyChain:
    """Mixed into the Runner object: its functions appear among the module's."""

    source: dagger.Directory

    @function(cache="never")
    async def verify(
        self,
        images: Annotated[list[str], Doc("HOST/NAMESPACE/REPOSITORY:TAG references")],
        key: Annotated[list[dagger.File] | None, Doc("PEM public keys whose signatures to trust")] = None,
        identity: Annotated[str, Doc("Sigstore keyless identity to trust (the CI workflow that signs)")] = "",
        issuer: Annotated[str, Doc("OIDC issuer of --identity")] = "",
        username: Annotated[str, Doc("registry user, for private images")] = "",
        password: OptPassword = None,
        insecure: Insecure = False,
    ) -> str:
        """Check each image's signed provenance and SBOM, failing on the first mismatch.

        The subject digest, target tag and SBOM digest are compared; a mismatch is named: unsigned,
        wrong key, wrong digest, moved tag, tampered SBOM."""
        import tempfile
        from pathlib import Path

        from runner.flow.registry_access import split_reference
        from runner.release.signing import Trust
        from runner.release.verification import verify_image

        with tempfile.TemporaryDirectory(prefix="runner-keys-") as folder:  # read once, then removed
            paths = []
            for n, f in enumerate(key or []):
                paths.append(Path(folder) / f"key{n}.pem")
                paths[-1].write_text(await f.contents())
            trust = Trust.from_args(paths, identity, issuer)
        out = []
        for ref in images:
            host, repo, tag = split_reference(ref)
            async with await _registry(host, username, password, insecure) as reg:
                proven = await verify_image(reg, repo, tag, trust)
            out.append({"image": ref, "platforms": [p.as_dict() for p in proven]})
        return json.dumps(out, indent=1)


class MirrorFunctions:
    """Mixed into the Released object (its selection, and the registry as the source of the copies)."""

    source: dagger.Directory
    selection: str
    address: str
    username: str
    password: dagger.Secret | None
    namespace: str
    repository: str
    insecure: bool

    @function(cache="never")
    async def mirror(
        self,
        to: Annotated[str, Doc("HOST/NAMESPACE the copies go to")],
        mirror_username: Annotated[str, Doc("user on the mirror")] = "",
        mirror_password: Annotated[dagger.Secret | None, Doc("password or token on the mirror")] = None,
        check: Annotated[bool, Doc("only check that the mirror serves each final tag at the source's digest, "
                                   "with its artifacts; fail listing what is missing or differs")] = False,
    ) -> str:
        """Copy the selection's final tags by digest, with SBOMs and provenance, to another registry.

        The copy may also go to another namespace; with --check, list what the mirror lacks instead."""
        from runner.release.mirror import Copier, mirror
        from runner.release.verification import check_mirrors

        release = await self.release("mirror", writes=False)
        tags = [t.tag for t in release.targets]
        host, _, dest_ns = to.partition("/")
        if not host or not dest_ns:
            raise UserError("malformed --to", value=to, allowed="host[:port]/namespace, e.g. quay.io/gpustack")
        project = release.project
        name = self.repository or project.repository
        source_repo, dest_repo = f"{self.namespace or project.namespace}/{name}", f"{dest_ns}/{name}"
        async with await _registry(self.address, self.username, self.password, self.insecure) as src, \
                await _registry(host, mirror_username, mirror_password, self.insecure) as dest:
            if check:
                rows = await check_mirrors(src, source_repo, [(dest, dest_repo)], tags)
                text = json.dumps([r.as_dict() for r in rows], indent=1)
                if not all(r.ok for r in rows):
                    from runner.release.verification import Rejected

                    raise Rejected(f"the mirror {to} does not serve every tag as the source does:\n{text}")
                return text
            await dest.login()
            copied = await mirror(Copier(src, source_repo, dest, dest_repo), tags)
        return json.dumps([vars(c) for c in copied], indent=1)

    @function(cache="never")
    async def digests(
        self,
        current: Annotated[dagger.File | None, Doc("the catalog.digests.json to update (default: a new one)")] = None,
        reason: Annotated[str, Doc("why final tags changed digest (default: first promotion, polished re-push "
                                   "or re-push)")] = "",
    ) -> dagger.File:
        """Pin the selected final tags' digests in catalog.digests.json; run it after promote.

        Each tag's index and platform digests are read from the registry, and each change of a tag's
        digest is recorded with its reason."""
        import tempfile
        from pathlib import Path

        from runner.model.catalog import CatalogFile
        from runner.release import ledger
        from runner.release.publish import Promotion, Repository as Repo

        release = await self.release("digests", writes=False)
        project, targets = release.project, release.targets
        repo = Repo(self.address, self.namespace or project.namespace, self.repository or project.repository)
        with tempfile.TemporaryDirectory(prefix="runner-digests-") as folder:
            book = CatalogFile(Path(folder) / "catalog.json")
            if current is not None:
                ledger.path_for(book.path).write_text(await current.contents())
            async with await _registry(self.address, self.username, self.password, self.insecure) as reg:
                final = [Promotion(t.tag, digest) for t in targets if (digest := await reg.digest(repo.path, t.tag))]
                await ledger.record_promotions(book, reg, repo, final, ledger.reasons(targets, reason))
            text = ledger.path_for(book.path).read_text()
        return dag.directory().with_new_file("catalog.digests.json", text).file("catalog.digests.json")


async def _registry(host: str, username: str, password: dagger.Secret | None, insecure: bool):
    from runner.flow.on_dagger import access

    return (await access(host, username, password, insecure)).client()
