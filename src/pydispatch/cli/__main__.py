"""``python -m pydispatch.cli``: how the dispatcher, workers and the demo start their processes."""

from __future__ import annotations

from .main import main

raise SystemExit(main())
