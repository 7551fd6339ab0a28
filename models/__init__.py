"""psconv-accel models package."""
