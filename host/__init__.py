"""psconv-accel host side: pack a quantized model, talk to a board, stream inference frames.

Modules (one concept each):

- :mod:`host.pack`: check a :class:`hw.qmodel.QModel` against its patterns and pack the image.
- :mod:`host.transport`: byte transports (pyserial: USB-UART, pseudo-terminal, ``loop://``).
- :mod:`host.protocol`: the framed request/response client with timeouts and retries.
- :mod:`host.runner`: stream test frames, check them bit-exact, report accuracy and speed.
- :mod:`host.simboard` / :mod:`host.sim_bridge`: the Verilated engine behind a pty.
- :mod:`host.fakeboard`: an in-process board with fault injection, for tests.
- :mod:`host.synthetic`: random, well-scaled quantized models, for tests without training.

Command line: ``python -m host pack ...`` and ``python -m host run ...`` (``--help``).
"""
