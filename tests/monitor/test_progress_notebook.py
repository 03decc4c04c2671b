"""Progress bars in Jupyter: a notebook run by a real IPython kernel (``nbclient``, the kernel
the ``ipykernel`` package installs) with ``ipywidgets``: ``pydispatch.progress`` over futures,
``Client.map(progress=True)`` and ``progress(job)`` draw tqdm's notebook widgets (tqdm.auto's
choice in a kernel), and the widgets' final state, which the kernel sends to the notebook,
says every task and record was counted. Outside a kernel the same call draws a text bar."""

from __future__ import annotations

import io
import os
import re
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytest.importorskip("ipywidgets", reason="the Jupyter test needs the test extra's ipywidgets")

CELLS = [
    """
import tqdm.auto, tqdm.notebook
from pydispatch import LocalCluster, progress
from pydispatch.stream import StreamEnvironment
print("notebook bars:", issubclass(tqdm.auto.tqdm, tqdm.notebook.tqdm))
cluster = LocalCluster(workers=1, slots=2)
cluster.start()
client = cluster.client()
""",
    """
futures = [client.submit(pow, 2, i) for i in range(30)]
progress(futures, timeout=120)
print("futures:", sum(f.result() for f in futures))
""",
    """
squares = list(client.map(pow, range(500), [2] * 500, chunksize=50, progress=True))
print("map:", len(squares))
""",
    """
env = StreamEnvironment(cluster, parallelism=1)
env.from_collection(range(2_000)).name("numbers").map(lambda x: x + 1).name("plus_one").for_each(
    lambda x: None
).name("drop")
handle = env.execute("notebook-job")
progress(handle, interval=0.2, timeout=120)
print("job:", handle.status())
client.shutdown()
cluster.close()
""",
]


def _widget_states(notebook: Any) -> list[dict[str, Any]]:
    stored = notebook.metadata.get("widgets", {})
    state = stored.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [model["state"] for model in state.values()]


@pytest.mark.slow
def test_progress_draws_notebook_widgets_in_a_jupyter_kernel() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source.strip()) for source in CELLS]
    # The kernel inherits this environment (PYTHONPATH: the tree under test).
    NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True).execute(
        env=dict(os.environ)
    )
    text = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "notebook bars: True" in text
    assert "futures: 1073741823" in text  # 2**0 + ... + 2**29
    assert "map: 500" in text
    assert "job: FINISHED" in text
    widgets = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    assert len(widgets) >= 5  # futures, map, and a bar per operator of the job
    states = _widget_states(notebook)
    bars = [s for s in states if s.get("_model_name") == "FloatProgressModel"]
    finished = sorted((int(s["value"]), int(s["max"])) for s in bars if s.get("max"))
    assert (30, 30) in finished
    assert (500, 500) in finished
    labels = " ".join(
        str(s.get("value", "")) for s in states if s.get("_model_name") == "HTMLModel"
    )
    assert "30/30" in labels
    assert "500/500" in labels
    assert re.search(r"\b2000\b", labels), labels  # the job's operators counted every record


def test_outside_a_kernel_tqdm_auto_draws_text() -> None:
    from pydispatch import LocalCluster, progress

    stream = io.StringIO()
    with LocalCluster(workers=1, slots=1) as cluster, cluster.client() as client:
        progress([client.submit(pow, 3, i) for i in range(5)], file=stream, timeout=120)
    assert re.search(r"5/5 \[", stream.getvalue()), stream.getvalue()
