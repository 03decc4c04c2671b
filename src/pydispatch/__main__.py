"""``python -m pydispatch``: the same as the ``pydispatch`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
