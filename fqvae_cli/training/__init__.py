"""Training: Algorithm 1 (loop.py), learning-rate and temperature schedules, checkpoints."""
