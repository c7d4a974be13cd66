"""The SBOM of a built image, as an SPDX 2.3 JSON document: read from the image itself (the
distribution's packages from dpkg's status file, the Python distributions from the metadata of every
installed distribution, which is what `pip inspect` reads), plus the native components the recipe
declares (HPC-X, GDRCopy, kernels built from source) with their versions and the sources they come
from. Nothing in it depends on the clock: the same image gives the same document, byte for byte."""

from __future__ import annotations

import email.parser
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from runner.compose.stages import Stage

MEDIA_TYPE = "application/spdx+json"
_MARK = "@@runner-sbom"
# One container run lists all three: os-release, dpkg's status and each installed distribution's
# metadata headers (up to the first blank line). Distributions count where an interpreter finds
# them (a site-packages or dist-packages folder), not copies vendored inside other packages.
SCRIPT = rf"""
echo "{_MARK} os-release"; cat /etc/os-release 2>/dev/null
echo "{_MARK} dpkg"; cat /var/lib/dpkg/status 2>/dev/null
find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type d \( -name '*.dist-info' -o -name '*.egg-info' \) -print 2>/dev/null | sort |
while read -r d; do
  case "${{d%/*}}" in */site-packages|*/dist-packages) ;; *) continue ;; esac
  f="$d/METADATA"; [ -f "$f" ] || f="$d/PKG-INFO"; [ -f "$f" ] || continue
  echo "{_MARK} dist $d"; sed '/^$/q' "$f"
done
true
"""


@dataclass
class Inventory:
    """What an image holds, as read from inside it."""

    os_release: dict[str, str] = field(default_factory=dict)
    debs: list[dict[str, str]] = field(default_factory=list)
    dists: list[dict[str, str]] = field(default_factory=list)  # name, version, location


def parse(output: str) -> Inventory:
    """The inventory of SCRIPT's output."""
    inv = Inventory()
    sections: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith(_MARK + " "):
            sections.append((line[len(_MARK) + 1:], []))
        elif sections:
            sections[-1][1].append(line)
    headers = email.parser.HeaderParser()
    for head, lines in sections:
        text = "\n".join(lines)
        if head == "os-release":
            inv.os_release = {k: v.strip().strip('"') for k, _, v in (x.partition("=") for x in lines) if v}
        elif head == "dpkg":
            for paragraph in re.split(r"\n\s*\n", text):
                fields = headers.parsestr(paragraph)
                if fields.get("Package") and "installed" in (fields.get("Status") or "").split():
                    inv.debs.append({"name": fields["Package"], "version": fields.get("Version", ""),
                                     "arch": fields.get("Architecture", ""), "source": fields.get("Source", "")})
        elif head.startswith("dist "):
            fields = headers.parsestr(text)
            if fields.get("Name"):
                inv.dists.append({"name": fields["Name"], "version": fields.get("Version", ""),
                                  "location": head[5:].rsplit("/", 1)[0]})
    return inv


@dataclass(frozen=True)
class Native:
    """A native component the recipe declares, with where it comes from when the recipe says."""

    name: str
    version: str
    source: str = ""  # a download URL or git+URL@ref


def native_components(leaf: Stage) -> list[Native]:
    """The native components of an image's stages, each with its declared source: a Download or Git
    of the same name that the steps of the image or of the build stages it copies from fetch."""
    from runner.compose.sources import Download, Git, declared_sources
    from runner.compose.stages import Run

    stages, todo = {}, [leaf]
    while todo:
        s = todo.pop()
        if s.key not in stages:
            stages[s.key] = s
            todo.extend(s.dependencies())
    scripts = "\n".join(step.script for st in stages.values() for step in st.steps if isinstance(step, Run))
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(leaf.platform.split("/")[-1], "")
    out = []
    for c in (c for st in leaf.chain() for c in st.components if not (c.dist or c.imports)):
        source = ""
        for d in declared_sources():
            if d.name.casefold() != c.name.casefold():
                continue
            if isinstance(d, Download) and (m := d.pattern().search(scripts)):
                url = m.group(0).replace("$(uname -m)", machine)  # the URL exactly as this platform fetched it
                source = url if not any(ch in url for ch in "${}") else ""
            elif isinstance(d, Git) and d.url in scripts:
                source = f"git+{d.url}@{d.ref}"
        out.append(Native(c.name, c.version, source))
    return out


def _purl_deb(d: dict[str, str], os_release: dict[str, str]) -> str:
    distro = os_release.get("ID", "debian")
    tail = f"?arch={d['arch']}" + (f"&distro={distro}-{os_release['VERSION_ID']}" if "VERSION_ID" in os_release else "")
    return f"pkg:deb/{distro}/{quote(d['name'])}@{quote(d['version'])}{tail}"


def _pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def document(inv: Inventory, natives: Sequence[Native], *, image: str, digest: str, platform: str,
             created: str, namespace_base: str) -> dict:
    """The SPDX 2.3 document of one image (a platform's manifest, named by its digest)."""
    ids: set[str] = set()

    def spdx_id(kind: str, name: str) -> str:
        base = f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-")
        found, n = base, 1
        while found in ids:
            n += 1
            found = f"{base}-{n}"
        ids.add(found)
        return found

    def package(kind: str, name: str, version: str, location: str = "NOASSERTION", purl: str = "",
                info: str = "", comment: str = "") -> dict:
        p = {"SPDXID": spdx_id(kind, name), "name": name, "versionInfo": version or "NOASSERTION",
             "downloadLocation": location, "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
             "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION"}
        if purl:
            p["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": purl}]
        if info:
            p["sourceInfo"] = info
        if comment:
            p["comment"] = comment
        return p

    repository, _, tag = image.rpartition(":")
    root = package("Image", repository.rsplit("/", 1)[-1], tag,
                   purl=f"pkg:oci/{repository.rsplit('/', 1)[-1]}@{quote(digest)}?"
                        f"repository_url={quote(repository, safe='/')}&tag={quote(tag)}",
                   comment=f"{image} for {platform}")
    root.update(primaryPackagePurpose="CONTAINER",
                checksums=[{"algorithm": "SHA256", "checksumValue": digest.removeprefix("sha256:")}])
    packages = [root]
    packages += [package("deb", d["name"], d["version"], purl=_purl_deb(d, inv.os_release),
                         info=f"source package {d['source']}" if d["source"] else "")
                 for d in sorted(inv.debs, key=lambda d: (d["name"], d["arch"]))]
    packages += [package("python", d["name"], d["version"], purl=f"pkg:pypi/{_pypi_name(d['name'])}@{quote(d['version'])}",
                         comment=f"installed in {d['location']}")
                 for d in sorted(inv.dists, key=lambda d: (_pypi_name(d["name"]), d["location"]))]
    packages += [package("native", n.name, n.version, location=n.source or "NOASSERTION",
                         comment="declared by the recipe" + ("" if n.source else "; its source is not declared"))
                 for n in natives]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root["SPDXID"]}]
    relationships += [{"spdxElementId": root["SPDXID"], "relationshipType": "CONTAINS",
                       "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]]
    return {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
            "name": f"{image} {platform}",
            "documentNamespace": f"{namespace_base.rstrip('/')}/spdx/{quote(repository, safe='/')}/{digest}",
            "creationInfo": {"created": created, "creators": [f"Tool: runner-{_version()}"]},
            "packages": packages, "relationships": relationships}


def dumps(doc: dict) -> bytes:
    """The document's bytes: keys sorted, so the same image always gives the same digest."""
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def described_digest(doc: dict) -> str:
    """The image digest an SPDX document of ours describes ('' when it names none)."""
    for rel in doc.get("relationships", []):
        if rel.get("relationshipType") == "DESCRIBES" and rel.get("spdxElementId") == "SPDXRef-DOCUMENT":
            for p in doc.get("packages", []):
                if p.get("SPDXID") == rel.get("relatedSpdxElement"):
                    for c in p.get("checksums", []):
                        if c.get("algorithm") == "SHA256":
                            return "sha256:" + c.get("checksumValue", "")
    return ""


def counts(doc: dict) -> dict[str, int]:
    """How many packages of each kind a document lists (for reports)."""
    out: dict[str, int] = {}
    for p in doc.get("packages", [])[1:]:
        kind = p["SPDXID"].split("-")[1]
        out[kind] = out.get(kind, 0) + 1
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner")
    except PackageNotFoundError:
        return "0"


def names(doc: dict, kind: str) -> Iterable[str]:
    """The names of a document's packages of one kind (deb, python, native)."""
    return (p["name"] for p in doc.get("packages", []) if p["SPDXID"].startswith(f"SPDXRef-{kind}-"))
