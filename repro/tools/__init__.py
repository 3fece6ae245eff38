"""Developer tools: dvc.yaml generation, the parameter table, benchmarks, sampling time."""
