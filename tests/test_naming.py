"""Image names: formatted from targets, parsed back, round-trip over generated targets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.model.errors import UserError
from runner.model.naming import format_image, format_tag


def test_seed_naming_examples(project):
    t = next(x for x in project.targets if x.tag == "cann8.5-910b-vllm0.14.1")
    assert format_tag(t, "linux/arm64") == "cann8.5-910b-vllm0.14.1-linux-arm64"
    assert format_tag(t, dev=True) == "cann8.5-910b-vllm0.14.1-dev"
    assert format_image(t.tag) == "gpustack/runner:cann8.5-910b-vllm0.14.1"
    assert format_image(t.tag, "acme", "images", "127.0.0.1:5000") == "127.0.0.1:5000/acme/images:cann8.5-910b-vllm0.14.1"


@pytest.mark.parametrize("ref,fields", [
    ("gpustack/runner:cann8.5-a3-vllm0.14.1", dict(backend="cann", backend_version="8.5", backend_variant="a3",
                                                  service="vllm", service_version="0.14.1", platform="", dev=False)),
    ("quay.io/gpustack/runner:cuda12.8-sglang0.5.6.post2-linux-arm64",
     dict(registry="quay.io", backend="cuda", service="sglang", service_version="0.5.6.post2", platform="linux/arm64")),
    ("localhost:5000/x/y:cann8.3-910b-mindie2.2.rc1-dev", dict(registry="localhost:5000", namespace="x", repository="y",
                                                             service="mindie", service_version="2.2.rc1", dev=True)),
    ("dtk25.04-vllm0.8.5", dict(backend="dtk", backend_version="25.04", namespace="")),
    ("runner:rocm7.0-vllm0.13.0", dict(repository="runner", namespace="")),
])
def test_parse_reads_every_form(project, ref, fields):
    got = project.parser.parse(ref).as_dict()
    assert {k: got[k] for k in fields} == fields


@pytest.mark.parametrize("ref,message", [
    ("gpustack/runner:cuda12.8-910b-vllm0.9.2", "backend 'cuda' has no variant '910b'"),
    ("gpustack/runner:tpu1.0-vllm0.9.2", "a tag starting with a backend"),
    ("gpustack/runner:cuda12-vllm0.9.2", "cuda then its major.minor version"),
    ("gpustack/runner:cuda12.8-tgi1.0", "with service one of"),
    ("gpustack/runner:cuda12.8-vllm0.9.2-linux-s390x", "platform one of"),
    ("gpustack/runner", "no tag"),
])
def test_parse_refuses_with_a_clear_message(project, ref, message):
    with pytest.raises(UserError, match=message):
        project.parser.parse(ref)


@st.composite
def references(draw, project):
    t = draw(st.sampled_from(project.targets))
    platform = draw(st.sampled_from(("",) + t.platforms))
    dev = not platform and draw(st.booleans())
    registry = draw(st.sampled_from(["", "127.0.0.1:5000", "registry.example.com", "localhost"]))
    namespace = draw(st.sampled_from(["gpustack", "acme-ai", "team/sub"]))  # a dotted first part would be a registry
    return t, platform, dev, format_image(format_tag(t, platform, dev), namespace, "runner", registry), registry, namespace


def test_format_and_parse_round_trip(project):
    @settings(max_examples=400, deadline=None)
    @given(references(project))
    def check(case):
        t, platform, dev, ref, registry, namespace = case
        p = project.parser.parse(ref)
        assert (p.backend, p.backend_version, p.backend_variant, p.service, p.service_version) == (
            t.backend, t.backend_version, t.variant, t.service, t.service_version)
        assert (p.platform, p.dev, p.registry, p.namespace) == (platform, dev, registry, namespace)
        assert format_image(p.tag, p.namespace, p.repository, p.registry) == ref

    check()


def test_every_matrix_tag_is_lowercase_and_unique(project):
    tags = [t.tag for t in project.targets]
    assert len(set(tags)) == len(tags) and all(t == t.lower() for t in tags)
