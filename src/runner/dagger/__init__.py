"""Build, smoke-test and publish GPUStack Runner inference-service images (vLLM, SGLang, MindIE,
VoxBox on eight accelerated backends) from one validated matrix. `dagger call select --backend cann
build` builds and smoke-tests every Ascend CANN image; `dagger functions` lists the rest."""

# Layer: a face (the Dagger module). It may import every layer below the faces, never runner.cli; the
# command line and this module share what they show through runner.ui, and reach the engines, the
# registry client and the stage plan only through runner.flow.
