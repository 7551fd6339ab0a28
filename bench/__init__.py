"""psconv-accel bench package."""
