"""Policy bundles: strict rule files, compiled once, versioned by content."""
