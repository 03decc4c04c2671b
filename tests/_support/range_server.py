"""A static file server that answers byte ranges, for fsspec's HTTP file system (each split of
a text source reads its own range; the standard library's ``http.server`` ignores ``Range``):
Werkzeug's ``send_file``. ``main([HOST, PORT, DIRECTORY, LOG])`` prints ``ready`` once it
listens, then serves until it is ended, logging each request (with its client's address) to
the file LOG."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join
from werkzeug.serving import make_server
from werkzeug.utils import send_file
from werkzeug.wrappers import Request

__all__ = ["main"]


def _application(directory: str) -> Any:
    @Request.application
    def serve(request: Request) -> Any:
        path = safe_join(directory, request.path.lstrip("/"))
        if path is None:
            raise NotFound()
        return send_file(path, request.environ, conditional=True)

    return serve


def main(argv: Iterable[str]) -> None:
    host, port, directory, log = argv
    logging.basicConfig(filename=log, level=logging.INFO)
    server = make_server(host, int(port), _application(directory), threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
