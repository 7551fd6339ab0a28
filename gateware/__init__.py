"""psconv-accel gateware package."""
