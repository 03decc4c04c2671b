"""Drives one slot (``pydispatch.runtime.slot._Slot``) in this process against a ROUTER that plays
the dispatcher, and prints what the slot ran. Run by ``test_slot.py`` in a subprocess, which ends
it: the slot's serve loop never returns.

Each scenario makes a message reach the slot's socket while a tiny task runs, i.e. just
before the slot picks and announces its next attempt:

* ``kill``: task A_i runs and meanwhile the dispatcher's ``Kill`` of B_i (next in line) comes;
* ``priority``: task A_i runs and meanwhile a ``Run`` of H_i with a higher priority than L_i
  (next in line) comes.

``sync`` (n ignored): task A runs until a gate opens, B waits behind it; once the slot reported
A running, the dispatcher counts B cancelled as it sends its Kill, which may still be on its way
when A ends. Here the gate opens before the Kill is sent: the slot must wait for it (its Done of
A asks for a sync) rather than start B. Prints what ran, whether B ran before the Kill was sent,
and how B ended.
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
GATE = threading.Event()


def wait_for_gate(name: str) -> None:
    RAN.append(name)
    GATE.wait(20)


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


def _done(router: Any, until: Any) -> p.Done:
    """The slot's next Done for which ``until(done)`` holds (others are skipped)."""
    while True:
        if not router.poll(20_000):
            raise TimeoutError("the slot sent no such Done")
        message = p.decode(router.recv_multipart()[-1])
        if isinstance(message, p.Done) and until(message):
            return message


def _connected_slot() -> tuple[Any, _Slot]:
    """A ROUTER playing the dispatcher (also kept as ``ROUTER``) and a slot connected to it
    both ways, its state in a temporary file."""
    import slot_probe as me

    context: zmq.Context[Any] = zmq.Context()
    router = me.ROUTER = context.socket(zmq.ROUTER)
    router.bind("inproc://dispatcher")
    dealer = make_socket(context, zmq.DEALER, identity=b"slot")
    dealer.connect("inproc://dispatcher")
    dealer.send_multipart([b"", b"hello"])
    router.recv_multipart()  # connected both ways
    state = os.path.join(tempfile.mkdtemp(), "state")
    return router, _Slot(dealer, SlotState(state, create=True))


def sync_main() -> None:
    import slot_probe as me

    keep_by_reference("slot_probe")
    router, slot = _connected_slot()
    specs = [_spec(1, me.wait_for_gate, ("A",), 0), _spec(2, me.record, ("B",), 0)]
    router.send_multipart([b"slot", b"", p.encode(p.Run(specs))])
    slot.start_late_flusher()
    threading.Thread(target=slot.serve, daemon=True).start()
    _done(router, lambda d: 1 in d.started)  # A reported running: B counted cancelled
    me.GATE.set()  # A ends before B's Kill leaves
    done = _done(router, lambda d: any(r.attempt_id == 1 for r in d.results))
    time.sleep(0.2)  # B, were it not waiting for the sync, has had its chance to start
    ran_before_kill = list(me.RAN)
    router.send_multipart([b"slot", b"", p.encode(p.Kill([2]))])
    router.send_multipart([b"slot", b"", p.encode(p.Kill([], done.sync))])
    b = _done(router, lambda d: any(r.attempt_id == 2 for r in d.results))
    (status,) = [r.status for r in b.results if r.attempt_id == 2]
    report = {"ran": me.RAN, "before_kill": ran_before_kill, "sync": done.sync, "b": status}
    print(json.dumps(report), flush=True)
    os._exit(0)


def main(kind: str, n: int) -> None:
    import slot_probe as me

    router, slot = _connected_slot()
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
    if sys.argv[1] == "sync":
        sync_main()
    else:
        main(sys.argv[1], int(sys.argv[2]))
