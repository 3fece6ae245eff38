"""repro: a reproducibility suite for five deep active-learning papers (MCDAL, ADS, DAAL, MAL, DAL)."""

__version__ = "0.1.0"
