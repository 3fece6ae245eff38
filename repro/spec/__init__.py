"""Run specification: params, dataset and artifact registries, fingerprints, records (torch-free)."""
