"""Which layers of two builds of one image differ, and why: for each layer pair, the files only in one,
the files whose content differs (named by the usual causes: bytecode that embeds a source time,
installer records, logs and caches in a layer, linker caches), and the differences that are only
timestamps, ownership or file order, which `--reproducible` builds remove.

Any image pair works: `docker save` archives, or image references on a Docker daemon (saved with the
docker client; --host-a/--host-b name two daemons, e.g. two CI runners that built the same target).

    python bench/layer_diff.py a.tar b.tar
    python bench/layer_diff.py IMAGE --host-a unix:///a.sock IMAGE --host-b unix:///b.sock [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

CAUSES = [  # (pattern on the path, why its bytes differ between two builds)
    (r"\.pyc$", "Python bytecode embeds its source's mtime (or is compiled in another order)"),
    (r"\.dist-info/(RECORD|INSTALLER|direct_url\.json)$", "installer records (hashes of the bytecode, URLs)"),
    (r"(^|/)(var/log|var/cache|root/\.cache|tmp)/", "a log or cache written into the layer"),
    (r"etc/ld\.so\.cache$", "the linker cache lists libraries in discovery order"),
    (r"var/lib/dpkg/|var/lib/apt/", "package manager state with dates"),
    (r"\.(so|a|o)(\.[0-9.]+)?$|/bin/", "a compiled binary (build paths, dates or a random build ID)"),
    (r"\.(whl|egg|zip|jar)$", "an archive with its own member timestamps"),
]


def saved(image: str, host: str, folder: Path) -> Path:
    """A `docker save` archive of the image (the path itself when it is one)."""
    if Path(image).is_file():
        return Path(image)
    out = folder / (re.sub(r"[^A-Za-z0-9.-]+", "-", image) + f"-{abs(hash(host))}.tar")
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    subprocess.run(["docker", "save", "-o", str(out), image], env=env, check=True)
    return out


def read_image(archive: Path) -> tuple[dict, list[dict]]:
    """(config, one listing per layer: path -> facts) of a docker save archive."""
    with tarfile.open(archive) as outer:
        entry = json.loads(outer.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = json.loads(outer.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        layers = []
        for name in entry["Layers"]:
            listing, order = {}, []
            with tarfile.open(fileobj=outer.extractfile(name), mode="r|") as layer:  # type: ignore[arg-type]
                for m in layer:
                    digest = ""
                    if m.isreg():
                        h = hashlib.sha256()
                        f = layer.extractfile(m)
                        while chunk := f.read(1 << 20):  # type: ignore[union-attr]
                            h.update(chunk)
                        digest = h.hexdigest()
                    listing[m.name] = {"type": m.type, "mode": m.mode, "owner": (m.uid, m.gid), "mtime": int(m.mtime),
                                       "link": m.linkname, "content": digest, "size": m.size}
                    order.append(m.name)
            layers.append({"files": listing, "order": order, "diff_id": ""})
        for layer, diff_id in zip(layers, config["rootfs"]["diff_ids"]):
            layer["diff_id"] = diff_id
    return config, layers


def why(path: str) -> str:
    return next((reason for pattern, reason in CAUSES if re.search(pattern, path)), "other content")


def compare_layer(a: dict, b: dict) -> dict:
    fa, fb = a["files"], b["files"]
    only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
    content, meta = [], {"mtime": 0, "owner": 0, "mode": 0}
    for path in sorted(set(fa) & set(fb)):
        x, y = fa[path], fb[path]
        if (x["content"], x["link"], x["type"]) != (y["content"], y["link"], y["type"]):
            content.append(path)
        for key in meta:
            meta[key] += x[key] != y[key]
    causes: dict[str, list[str]] = {}
    for path in content + only_a + only_b:
        causes.setdefault(why(path), []).append(path)
    order = [p for p in a["order"] if p in fb] != [p for p in b["order"] if p in fa]
    return {"same": a["diff_id"] == b["diff_id"], "files": len(fa), "only_in_a": only_a, "only_in_b": only_b,
            "content": content, "metadata": meta, "order_differs": order,
            "fixed_by_reproducible": not (content or only_a or only_b or meta["owner"] or meta["mode"]),
            "causes": {k: v[:5] + ([f"... {len(v) - 5} more"] if len(v) > 5 else []) for k, v in causes.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image_a")
    ap.add_argument("image_b")
    ap.add_argument("--host-a", default="", help="DOCKER_HOST of the daemon holding image_a")
    ap.add_argument("--host-b", default="", help="DOCKER_HOST of the daemon holding image_b")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="layer-diff-") as tmp:
        config_a, layers_a = read_image(saved(a.image_a, a.host_a, Path(tmp)))
        config_b, layers_b = read_image(saved(a.image_b, a.host_b, Path(tmp)))
    rows = [compare_layer(x, y) for x, y in zip(layers_a, layers_b)]
    history = [h.get("created_by", "")[-90:] for h in config_a.get("history", []) if not h.get("empty_layer")]
    result = {"layers": len(layers_a), "layers_b": len(layers_b), "differ": sum(not r["same"] for r in rows),
              "config": {k: [config_a.get(k), config_b.get(k)] for k in ("created",) if config_a.get(k) != config_b.get(k)},
              "per_layer": [{"index": i, "step": history[i] if i < len(history) else "", **r} for i, r in enumerate(rows)],
              "seconds": round(time.perf_counter() - start, 2)}
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['differ']} of {result['layers']} layers differ ({result['seconds']} s to read both images)")
    for k, (x, y) in result["config"].items():
        print(f"  config {k}: {x} vs {y}")
    for r in result["per_layer"]:
        if r["same"]:
            continue
        m = r["metadata"]
        print(f"layer {r['index']} ({r['files']} entries) {r['step']}")
        print(f"  content differs: {len(r['content'])}, only in a: {len(r['only_in_a'])}, only in b: "
              f"{len(r['only_in_b'])}; mtimes: {m['mtime']}, owners: {m['owner']}, modes: {m['mode']}; "
              f"order differs: {r['order_differs']}")
        print("  " + ("timestamps/order only: --reproducible removes this difference" if r["fixed_by_reproducible"]
                      else "content differs, --reproducible does not fix it:"))
        for cause, paths in r["causes"].items():
            print(f"    {cause}: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
