"""Stand-ins of official service images: a row that layers a service's official image
(runner.compose.official) which cannot be pulled here builds on the backend's Debian stand-in with uv
and the service's own wheel at the row's exact version from the package index as it stood on the day of
that release (the image was built then), the resolver taking the torch that wheel pins. A vendor image
whose recipe checks the service and torch it ships stands in the same way, torch (and its companions) held at the vendor's version, from the index as it stood on
the day of the service's release, the era the vendor's image was made in. What such a stand-in cannot
carry is declared with its substitution (OfficialStandin, declared here)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from runner.compose.kit import TORCHVISION, at_least
from runner.compose.stages import Stage
from runner.model.targets import Target
from runner.rehearse.rewrite import STANDIN_REPOSITORY
from runner.rehearse.substitutions import STANDIN_PYTHON, STANDIN_SUITE, Substitution

@dataclass(frozen=True)
class OfficialStandin:
    """What stands for a service's official image here: the backend's Debian stand-in, uv from the package
    index, and the service's wheel at the row's exact version with the torch that wheel pins (the resolver
    takes the wheel's own pin, as the official image carries it)."""

    image: str  # the official image by tag (a vendor image: its reference)
    service: str
    version: str
    backend: str
    torch: str = ""  # a vendor image's: the torch it ships, held over the service's own pin
    # a vendor image's era: the index as it stood on the day of the service's release (uv's
    # --exclude-newer), so what the service leaves open resolves as it did then, not to today's releases
    era: str = ""

    @property
    def vendor(self) -> bool:
        return bool(self.torch)

    @property
    def requirement(self) -> str:
        extras = [x for floor, x in VENDOR_EXTRAS.get(self.service, ()) if at_least(self.version, floor)]
        return f"{self.service}{extras[-1] if extras and self.vendor else ''}=={self.version}"

    @property
    def also(self) -> tuple[str, ...]:
        """What the official image holds besides the service that the stand-in installs with it (a vendor
        image: its torch, which a service's wheel may not require)."""
        if self.vendor:
            return (*(VENDOR_BUILD_RUNS_WITH.get(self.service, ()) if self.built_without_device else ()),
                    f"torch=={self.torch}")
        return OFFICIAL_STANDIN_ALSO.get((self.backend, self.service), ())

    @property
    def built_without_device(self) -> tuple[str, ...]:
        """For a vendor's service that stands in as its release's source built with no device: what the
        build needs beside torch (installed first: the build runs on the vendor's torch); else ()."""
        return VENDOR_BUILT_WITHOUT_DEVICE.get(self.service, ()) if self.vendor else ()

    @property
    def sdist_name(self) -> str:
        """The file name of the release's sdist, which a stand-in built from it finds in its build context."""
        return f"{self.service}-{self.version}.tar.gz"

    @property
    def leaves_out(self) -> dict[str, str]:
        """The service's dependencies the stand-in leaves out, with why."""
        vendor = VENDOR_LEAVES_OUT.get(self.service, {}) if self.vendor and "[diffusion]" in self.requirement else {}
        return {**OFFICIAL_STANDIN_LEAVES_OUT.get(self.service, {}), **vendor}

    @property
    def overrides(self) -> tuple[str, ...]:
        """uv overrides: the left-out dependencies (a marker that is never true), a vendor image's torch
        with the torchvision and torchaudio of its release (an override of torch alone lets a companion
        resolve to today's release, which requires a later torch)."""
        held = ()
        if self.torch:
            held = (f"torch=={self.torch}", f"torchaudio=={self.torch}")
            held += (f"torchvision=={TORCHVISION[self.torch]}",) if self.torch in TORCHVISION else ()
        return tuple(f"{name}; sys_platform == 'never'" for name in sorted(self.leaves_out)) + held

    def _era(self) -> str:
        return (f", as the index stood on {self.era[:10]}, the day of the service's release" if self.era
                else ", as the index stands today (the day of the service's release could not be read)")

    def substitution(self, tag: str, torch: str, wants: str = "") -> Substitution:
        """What stands for the image; `wants`: the torch requirement of the service's own wheel, said where
        a vendor's torch is held over it (the index's build of the service was made for that one)."""
        if self.built_without_device:  # a vendor's build, stood in by its source
            return Substitution("stand-in base", self.image,
                                f"the Debian {STANDIN_SUITE} stand-in {tag} with {self.service} {self.version} built from its "
                                f"sdist with no device ({DEVICE_EMPTY}) on torch {torch}, with "
                                + " and ".join(VENDOR_BUILD_RUNS_WITH.get(self.service, ()))
                                + " as its device builds require them, from the package index"
                                + self._era() + " (uv; torch, torchvision and torchaudio held at the vendor's release)",
                                "the vendor image cannot be pulled here; its service is the vendor's own build for its "
                                "device on the vendor's torch, which the release's source built with no device stands "
                                "for (no kernels, no torch pin of another build), so its service check and every "
                                "start run; it cannot carry: the vendor's toolkit and its builds of torch and of the "
                                "service's kernels")
        if self.vendor:
            apart = ""
            if wants and wants != f"torch=={torch}":
                apart = (f"; the index's {self.service} {self.version} requires {wants}, the vendor's build of it runs on "
                         f"its torch {torch}: what imports the service may fail on the stand-in alone, and pip-check "
                         "names that requirement")
            return Substitution("stand-in base", self.image,
                                f"the Debian {STANDIN_SUITE} stand-in {tag} with {self.requirement} and torch {torch} "
                                f"from the package index{self._era()} (uv; torch, torchvision and torchaudio held at the "
                                "vendor's release over the service's pins)",
                                "the vendor image cannot be pulled here; the index's CUDA builds of the versions it "
                                "ships stand for the vendor's own, so its service check runs; it cannot carry: the "
                                "vendor's toolkit and its builds of torch and of the service"
                                + "".join(f", {name} ({why})" for name, why in self.leaves_out.items())
                                + VENDOR_STARTS.get(self.service, "") + apart)
        carried = " and ".join((self.requirement, *self.also))
        carried += f", with the torch {torch} the service's wheel pins" if torch else ""
        cannot = ", ".join(OFFICIAL_CANNOT_CARRY.get(self.backend, ()) + OFFICIAL_CANNOT_CARRY_ANY
                           + OFFICIAL_SERVICE_CANNOT_CARRY.get((self.backend, self.service), ())
                           + tuple(f"{name} ({why})" for name, why in self.leaves_out.items()))
        return Substitution("official image", self.image,
                            f"the Debian {STANDIN_SUITE} stand-in {tag} with {carried} from the package index"
                            + self._era() + " (uv)",
                            f"the official image cannot be pulled here; it cannot carry: {cannot}")


# What no stand-in of an official image carries, per backend, and on every backend
OFFICIAL_CANNOT_CARRY = {
    "cuda": ("the image's CUDA toolkit and libraries outside the index's wheels (/usr/local/cuda, nvcc)",
             "the kernels the image builds or fetches itself (its FlashInfer and DeepGEMM builds, "
             "its JIT caches)"),
    "rocm": ("ROCm and its libraries (/opt/rocm)", "the image's ROCm build of the service and of torch "
             "(the index's wheels are the CUDA builds of the same releases)"),
    "cann": ("CANN and the Ascend toolkit (/usr/local/Ascend)", "the image's Ascend plugin and torch_npu "
             "(the index has vllm-ascend 0.20.2rc1's wheel, but it pins triton-ascend==3.2.1, which only Ascend's "
             "mirror publishes (the index has 3.2.0), and torch 2.10.0 under vLLM 0.20.2's 2.11.0: uv finds no "
             "solution even with torch held; the index's vLLM and torch are the CUDA builds of the same releases)",
             "the transformers release the plugin pins (vllm-ascend 0.20.2rc1: ==5.5.3; the stand-in has the one "
             "vLLM alone resolves to, which a later install may move: pip-check then says so)"),
}
# vLLM's CUDA release images are built with INSTALL_KV_CONNECTORS=true: its requirements/kv_connectors.txt
# installed over the wheel, which the index's wheel alone does not bring
OFFICIAL_SERVICE_CANNOT_CARRY = {
    ("cuda", "vllm"): ("NIXL, CuPy and Mooncake of the KV-cache connectors the release image installs",),
}
# A vendor image is the service's whole runtime, per release from the floor on: SGLang before 0.5.5 keeps that
# (torch among it) in its srt extra, which a later release no longer declares (found rehearsing
# musa4.3-sglang0.5.2, whose stand-in had no torch); from 0.5.5 `sglang serve`, which GPUStack runs, imports
# its diffusion CLI on every start, hence the diffusion extra (found rehearsing hggc12.3-sglang0.5.5: every
# deployment failed on diffusers, then imageio), but for its CUDA kernels (VENDOR_LEAVES_OUT)
VENDOR_EXTRAS = {"sglang": (("0", "[srt]"), ("0.5.5", "[diffusion]"))}
# A vendor's vLLM is its own build for its device on its torch: the index's wheel is CUDA's, pins another
# torch and carries kernels built against it (maca3.3-vllm0.11.2: vllm._C of torch 2.9.0 aborted with
# std::bad_alloc under the vendor's 2.8.0 on every start; musa4.1-vllm0.9.2: pip-check named the pin). Its
# release's sdist built with no device, as CANN's recipe builds vLLM, stands for it; what the build needs
# beside torch (vLLM's pyproject build requirements but cmake and ninja: nothing is compiled)
DEVICE_EMPTY = "VLLM_TARGET_DEVICE=empty"
VENDOR_BUILT_WITHOUT_DEVICE = {"vllm": ("setuptools>=77.0.3,<80", "setuptools-scm>=8", "wheel", "jinja2", "packaging")}
# What a device build of vLLM requires beside its common requirements and that no device-empty build does:
# Ray and numba, in every device's requirements file (cuda.txt, rocm.txt); the vendor images carry Ray, which
# their recipes do not install and GPUStack starts (found rehearsing musa4.1-vllm0.9.2: `ray` not found).
# Ray without the cgraph extra that cuda.txt asks, which is CUDA's CuPy
VENDOR_BUILD_RUNS_WITH = {"vllm": ("ray", "numba")}
# What a vendor stand-in of a service cannot start with, whatever the versions (found rehearsing
# hggc12.3-sglang0.5.5, whose every start failed loading sgl_kernel's common_ops for want of libcuda.so.1).
# Tried on musa4.3-sglang0.5.2's stand-in: with a stub of the driver and the CUDA wheels' libraries laid
# out as a toolkit, common_ops then fails on an undefined symbol of torch (built against the index's torch,
# not the vendor's 2.5.0), as vLLM's CUDA kernels did before its stand-in was built with no device
VENDOR_STARTS = {"sglang": "; the index's sgl-kernel is CUDA's: it loads the CUDA driver (libcuda.so.1) and runtime as "
                           "SGLang starts, which no stand-in has, and its kernels are built against the index's torch, "
                           "not the vendor's (the vendor's build is its own): GPUStack's starts fail on it"}
VENDOR_LEAVES_OUT = {"sglang": {
    "st-attn": "a CUDA attention kernel of SGLang's diffusion extra, which a vendor's build has not (0.0.7 reached "
               "the index a week after SGLang 0.5.5)",
    "vsa": "a CUDA attention kernel of SGLang's diffusion extra, which a vendor's build has not"}}
# What the stand-in installs with the service because the official image has it too, from the index:
# LMCache from those KV-cache connectors (GPUStack's kv-cache deployment names it)
OFFICIAL_STANDIN_ALSO = {("cuda", "vllm"): ("lmcache",)}
OFFICIAL_CANNOT_CARRY_ANY = ("the official image's Ubuntu base and its python (the stand-in's is Debian 12's "
                             f"python {STANDIN_PYTHON})",)
# Dependencies of a service that the index cannot install on a stand-in, left out of its install (an
# override that never applies) and said with the substitution; pip-check then names them as missing
OFFICIAL_STANDIN_LEAVES_OUT = {
    "sglang": {"cuda-tile": "SGLang pins a pre-release of which the index has only the sdist, whose build "
                            "needs the CUDA toolkit"},
}


# The services a vendor image ships that the index has under the name the recipe's check asks pip for
VENDOR_SERVICES = ("vllm", "sglang")
# Reads the torch the install left in the image, for the substitution's text
TORCH_VERSION = "import importlib.metadata as m; print(m.version('torch'))"
# Reads the torch requirement of a service's own wheel (an extra's, where its runtime is an extra), for the same
TORCH_WANTED = ("import importlib.metadata as m, re, sys; print(next((r.split(';')[0].replace(' ', '') for r in "
                "m.requires(sys.argv[1]) or [] if re.match(r'torch(?![\\w.-])', r)), ''))")


def release_day(service: str, version: str) -> str:
    """The upload time of the service's release on the package index (ISO, UTC), "" where it cannot be
    read: the era a vendor's image of that release was made in."""
    from runner.verify.upstream import Upstreams

    try:
        files = Upstreams().index_files(service)
    except LookupError:
        return ""
    times = sorted(f["upload-time"] for f in files if f.get("upload-time") and
                   (f["filename"].startswith(f"{service}-{version}-") or f["filename"] == f"{service}-{version}.tar.gz"))
    # the end of that day: what was uploaded with the release (its own dependencies' releases) is in
    return f"{times[0][:10]}T23:59:59Z" if times else ""


def official_of(recipes, t: Target, base: Stage) -> OfficialStandin | None:
    """The stand-in for a base stage that is the official image a layered row starts from, else None."""
    recipe = recipes.get(t.backend)
    official = getattr(getattr(recipe, "module", None), "OFFICIAL", None)
    if official is None or not official.layers(t) or base.image != official.pinned(t):
        return None
    return OfficialStandin(official.image(t), t.service, t.service_version, t.backend)


def vendor_of(t: Target, base: Stage, leaf: Stage) -> OfficialStandin | None:
    """For a vendor image whose service stage checks the service and torch the image ships
    (runner.compose.kit.vendor_service, its build argument <SERVICE>_TORCH_VERSION), the stand-in with
    both at those versions; None for any other base."""
    name = f"{t.service.upper()}_TORCH_VERSION"
    chain = leaf.chain()
    torch = next((a.value for s in chain for a in s.args if a.name == name), "")
    if not torch or t.service not in VENDOR_SERVICES or base not in chain:
        return None
    return OfficialStandin(base.image, t.service, t.service_version, t.backend, torch=torch)


def dockerfile(base: str, official: OfficialStandin) -> str:
    """The stand-in on the backend's Debian stand-in `base`: uv from the index, then exactly the service's
    release; no cache is left in a layer (the image's own smoke checks look)."""
    override, tidy = (" --override /tmp/leave-out.txt", " && rm /tmp/leave-out.txt") if official.overrides else ("", "")
    override += f" --exclude-newer {official.era}" if official.era else ""
    install = f"uv pip install --system --no-cache{override} "
    also = " ".join(f'"{r}"' for r in official.also)
    if official.built_without_device:
        # torch and the build's needs first, then the sdist built on them into a wheel, and that installed:
        # a resolver reading the sdist's PKG-INFO would take the CUDA build's requirements (xformers and its
        # torch pin came in so), the wheel has the ones of the build with no device
        # the wheel of a built sdist is named by its metadata's version (0.9.2+empty), which pip refuses for a
        # requirement ==0.9.2 from the index: the sdist comes from the build context (sdist_name), bound in
        steps = [f"RUN {_overrides(official)}{install}"
                 + " ".join(f'"{r}"' for r in (f"torch=={official.torch}", *official.built_without_device)),
                 f"RUN --mount=type=bind,source={official.sdist_name},target=/tmp/{official.sdist_name} {DEVICE_EMPTY} "
                 "python3 -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/built "
                 f"/tmp/{official.sdist_name} && {install}/tmp/built/*.whl {also}{tidy} && rm -rf /tmp/built"]
    else:  # the official images install the service into the system python with uv
        steps = [f"RUN {_overrides(official)}{install}" + " ".join(filter(None, (f'"{official.requirement}"', also))) + tidy]
    return "\n".join([f"FROM {base}", "RUN PIP_NO_CACHE_DIR=1 python3 -m pip install uv", *steps,
                      f'RUN python3 -c "{TORCH_VERSION}"', 'CMD ["bash"]']) + "\n"


def _overrides(official: OfficialStandin) -> str:
    """The override file: the declared dependencies left out (a marker that is never true), a vendor's torch."""
    if not official.overrides:
        return ""
    lines = "\\n".join(official.overrides)
    return f'printf "{lines}\\n" > /tmp/leave-out.txt && '



def tag(base: str, official: OfficialStandin, platform: str) -> str:
    """The stand-in's tag: the service, version and platform it stands for, and a hash of what makes it."""
    text = dockerfile(base, official) + platform
    arch = platform.rsplit("/", 1)[-1]
    return (f"{STANDIN_REPOSITORY}{'vendor' if official.vendor else 'official'}-{official.service}{official.version}-{arch}-"
            f"{hashlib.sha256(text.encode()).hexdigest()[:12]}")
