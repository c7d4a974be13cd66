"""Registry operations through skopeo, for both engines: resolve a tag to its digest, copy by digest
(--all --preserve-digests: an index keeps its digest), list tags, and delete a tag.

The registry API can only delete manifests, which would take every tag sharing the digest with it
(a final tag and its -dev tag share one after promotion). So a tag is deleted by first pointing it
at a tiny tombstone image of its own and then deleting the tombstone's digest: other tags stay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable
from typing import Protocol

from runner.model.errors import UserError


class Run(Protocol):
    """Runs skopeo: argv (without 'skopeo'), files to place first (path -> bytes); (code, out, err)."""

    def __call__(self, argv: list[str], files: dict[str, bytes] | None = None) -> Awaitable[tuple[int, str, str]]: ...


_NOT_FOUND = ("manifest unknown", "not found", "name unknown", "404")


class Skopeo:
    """Registry operations as skopeo commands, run wherever `run` runs them (host or container)."""

    def __init__(self, run: Run, *, tls_verify: bool = True, authfile: str = "") -> None:
        self._run = run
        self._flags = [f"--tls-verify={'true' if tls_verify else 'false'}"]
        self._auth = [f"--authfile={authfile}"] if authfile else []

    async def _ok(self, argv: list[str], files: dict[str, bytes] | None = None) -> str:
        code, out, err = await self._run(argv, files)
        if code != 0:
            raise UserError(f"skopeo {argv[0]} failed: {err.strip().splitlines()[-1] if err.strip() else code}",
                            hint="check the registry address, credentials and that deletion is enabled on it")
        return out

    async def digest(self, ref: str) -> str | None:
        """sha256 digest of the manifest (or index) a reference names; None when it does not exist."""
        code, out, err = await self._run(["inspect", "--raw", *self._flags, *self._auth, f"docker://{ref}"])
        if code != 0:
            if any(s in err.lower() for s in _NOT_FOUND):
                return None
            raise UserError(f"cannot inspect {ref}: {err.strip().splitlines()[-1] if err.strip() else code}")
        return "sha256:" + hashlib.sha256(out.encode("utf-8", "surrogateescape")).hexdigest()

    async def copy(self, src: str, dst: str) -> None:
        await self._ok(["copy", "--all", "--preserve-digests", f"--src-tls-verify={self._flags[0].split('=')[1]}",
                        f"--dest-tls-verify={self._flags[0].split('=')[1]}", *self._auth,
                        f"docker://{src}", f"docker://{dst}"])

    async def tags(self, repository: str) -> list[str]:
        code, out, err = await self._run(["list-tags", *self._flags, *self._auth, f"docker://{repository}"])
        if code != 0:
            if any(s in err.lower() for s in _NOT_FOUND):
                return []
            raise UserError(f"cannot list tags of {repository}: {err.strip().splitlines()[-1] if err.strip() else code}")
        return sorted(json.loads(out).get("Tags") or [])

    async def delete(self, ref: str) -> None:
        """Remove one tag, leaving other tags of the same digest in place (see the module docstring)."""
        layout, digest = tombstone(ref)
        await self._ok(["copy", f"--dest-tls-verify={self._flags[0].split('=')[1]}", *self._auth,
                        "oci:/tmp/runner-tombstone:latest", f"docker://{ref}"], layout)
        await self._ok(["delete", *self._flags, *self._auth, f"docker://{ref.rsplit(':', 1)[0]}@{digest}"])


def tombstone(ref: str) -> tuple[dict[str, bytes], str]:
    """An OCI layout holding an empty image unique to `ref`, and its manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"io.gpustack.runner.tombstone": ref}}}, sort_keys=True).encode()
    cfg_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{cfg_digest}", "size": len(config)},
                           "layers": []}, sort_keys=True).encode()
    man_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{man_digest}",
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}).encode()
    root = "/tmp/runner-tombstone"
    files = {f"{root}/oci-layout": b'{"imageLayoutVersion": "1.0.0"}', f"{root}/index.json": index,
             f"{root}/blobs/sha256/{cfg_digest}": config, f"{root}/blobs/sha256/{man_digest}": manifest}
    return files, f"sha256:{man_digest}"
