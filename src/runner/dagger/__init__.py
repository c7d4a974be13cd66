"""runner: build, smoke-test and publish GPUStack Runner inference-service images from one validated
matrix, with Dagger. `dagger call build --backend cann` builds and smoke-tests every CANN image.

The Dagger face of runner: thin functions over runner.release, sharing runner.ui with the CLI. May
import every layer below the faces, never runner.cli."""
