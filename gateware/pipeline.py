"""Pipeline helpers shared by the engine's components."""

from amaranth import Signal

__all__ = ["delayed", "registered_read"]


def delayed(m, sig, n: int, name: str, *, reset_less: bool = False):
    """``sig`` through ``n`` registers of ``m``'s sync domain (named ``{name}_d0`` ..).

    ``reset_less`` for data: registers that need no reset stay off the reset net, whose fan-out
    is a critical path on the FPGA (see the README's timing section)."""
    for k in range(n):
        nxt = Signal.like(sig, name=f"{name}_d{k}", reset_less=reset_less)
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig


def registered_read(m, mem, name: str):
    """A read port of ``mem`` whose data arrives one cycle after its address, as from a
    synchronous port: ``(port, data)``, the port asynchronous and ``data`` the register after it.

    Yosys merges that register back into the block RAM's read port, and only then applies the
    memory's ``no_rw_check`` attribute (a read colliding with a write may return anything). A port
    that is already synchronous keeps read-old-data semantics, which Yosys emulates on a
    true-dual-port block RAM with a bypass multiplexer after the block RAM's output; on the ECP5
    that LUT, after the DP16KD's ~5.8 ns clock-to-out, made the critical path."""
    port = mem.read_port(domain="comb")
    data = Signal.like(port.data, name=f"{name}_q", reset_less=True)
    m.d.sync += data.eq(port.data)
    return port, data
