"""What every entry point shares, below training, evaluation and inference: what a `cpm.config.Config` builds
(`cpm.runtime.build`: network, codec, loss, datasets, seeds), checkpoint files (`cpm.runtime.checkpoint`) and the
batch a model reads (`cpm.runtime.batch`)."""
