"""Pipeline helpers shared by the engine's components."""

from amaranth import Signal

__all__ = ["delayed"]


def delayed(m, sig, n: int, name: str, *, reset_less: bool = False):
    """``sig`` through ``n`` registers of ``m``'s sync domain (named ``{name}_d0`` ..).

    ``reset_less`` for data: registers that need no reset stay off the reset net, whose fan-out
    is a critical path on the FPGA (see the README's timing section)."""
    for k in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{k}", reset_less=reset_less)
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig
