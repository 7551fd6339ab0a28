"""Pipeline helpers shared by the engine's components."""

from amaranth import Signal

__all__ = ["delayed"]


def delayed(m, sig, n: int, name: str):
    """``sig`` through ``n`` registers of ``m``'s sync domain (named ``{name}_d0`` ..)."""
    for k in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{k}")
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig
