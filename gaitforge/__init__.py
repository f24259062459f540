"""gaitforge: sim-to-real control stack for legged robots."""
