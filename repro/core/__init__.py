"""The shared trainer and what it needs: seeding, devices, tasks, metrics, training."""
