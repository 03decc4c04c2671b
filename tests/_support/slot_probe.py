"""Drives one slot (``pydispatch.runtime.slot._Slot``) in this process against a ROUTER that plays
the dispatcher, and prints what the slot ran. Run by ``test_slot.py`` in a subprocess, which ends
it: the slot's serve loop never returns.

Each scenario makes a message reach the slot's socket while a tiny task runs, i.e. just
before the slot picks and announces its next attempt:

* ``kill``: task A_i runs and meanwhile the dispatcher's ``Kill`` of B_i (next in line) comes;
* ``priority``: task A_i runs and meanwhile a ``Run`` of H_i with a higher priority than L_i
  (next in line) comes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

import zmq

from pydispatch.runtime.slot import SlotState, _Slot
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import dumps, keep_by_reference, make_socket

ROUTER: Any = None  # the "dispatcher" end of the slot's socket
RAN: list[str] = []  # what the slot ran, in order


def record(name: str) -> None:
    RAN.append(name)


def then_send(name: str, header: bytes) -> None:
    """A task during which the dispatcher's next message reaches the slot."""
    RAN.append(name)
    ROUTER.send_multipart([b"slot", b"", header])


def _spec(attempt: int, fn: Any, args: tuple[Any, ...], priority: int) -> p.RunSpec:
    frames: list[Any] = []
    fn_blob = dumps(fn, frames, inline_limit=1 << 20)
    args_blob = dumps((args, {}), frames, inline_limit=1 << 20)
    assert not frames  # all inline: the Run travels as one header frame
    return p.RunSpec(attempt, p.KIND_CALL, fn_blob, args_blob, priority)


def scenario(kind: str, n: int) -> list[p.RunSpec]:
    # The tasks by reference to this module imported by name (not __main__, whose functions
    # cloudpickle would copy by value, with the socket they use).
    import slot_probe as me

    keep_by_reference("slot_probe")  # under the working directory, it would go by value
    record, then_send = me.record, me.then_send
    specs = []
    for i in range(n):
        first, second = 2 * i + 1, 2 * i + 2
        if kind == "kill":
            header = p.encode(p.Kill([second]))
            name = f"B{i}"
        else:
            header = p.encode(p.Run([_spec(10_000 + i, record, (f"H{i}",), 10**6)]))
            name = f"L{i}"
        specs.append(_spec(first, then_send, (f"A{i}", header), 1000 - 2 * i))
        specs.append(_spec(second, record, (name,), 1000 - 2 * i - 1))
    return specs


def main(kind: str, n: int) -> None:
    import slot_probe as me

    context: zmq.Context[Any] = zmq.Context()
    router = me.ROUTER = context.socket(zmq.ROUTER)
    router.bind("inproc://dispatcher")
    dealer = make_socket(context, zmq.DEALER, identity=b"slot")
    dealer.connect("inproc://dispatcher")
    dealer.send_multipart([b"", b"hello"])
    router.recv_multipart()  # connected both ways
    state = os.path.join(tempfile.mkdtemp(), "state")
    slot = _Slot(dealer, SlotState(state, create=True))
    router.send_multipart([b"slot", b"", p.encode(p.Run(scenario(kind, n)))])
    threading.Thread(target=slot.serve, daemon=True).start()
    expected = 3 * n if kind == "priority" else n  # A_i, H_i and L_i / A_i only
    ran = me.RAN
    end = time.monotonic() + 20
    while time.monotonic() < end and len(ran) < expected:
        time.sleep(0.01)
    time.sleep(0.1)  # anything that should not run has had its chance
    print(json.dumps(ran), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
