"""The paper-specific losses, one module per method (ADS, MCDAL, DAAL, MAL, LL, VAE). Method-agnostic
scores and selection rules: repro/al/scores.py, repro/al/selection.py."""
