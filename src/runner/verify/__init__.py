"""What proves an image works: smoke specs, the consumer's command lines (seed 002) and device
profiles. May import runner.model and runner.compose; knows nothing of engines."""
