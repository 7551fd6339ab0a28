"""The hardware contract of psconv-accel in plain Python and numpy.

Patterns, variant names, sparse formats, the bit-exact integer reference of the engine and
cost models are defined here once; models/, gateware/ and host/ import them.
"""
