"""Execution back-ends: workers, lockstep groups, DDP, Slurm arrays, planning and budgets."""
