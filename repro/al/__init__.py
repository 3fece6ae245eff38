"""Active learning: losses, strategies, the loop."""
