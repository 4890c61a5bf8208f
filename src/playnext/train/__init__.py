"""Training for every neural model: losses, sequence batches and the one training loop."""
