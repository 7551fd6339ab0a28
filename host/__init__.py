"""psconv-accel host package."""
