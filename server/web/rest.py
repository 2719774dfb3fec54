"""JSON API under ``/api/v1``; errors are RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

from twisted.web import resource

from server import __version__
from server.errors import Code, SiegelError
from server.web.http import error_body, json_response


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        error = SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')}")
        ctype, body = error_body(request.path, error)
        request.setResponseCode(404)
        request.setHeader(b"content-type", ctype)
        return body


class WhoAmI(resource.Resource):
    """``GET /api/v1/whoami``: the authenticated account."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        p = request.principal
        return json_response(request, 200, {"id": p.user_id, "name": p.name, "role": p.role.value})


class ApiV1(resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.putChild(b"whoami", WhoAmI())

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return _NotFound()

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, {"name": "Siegel", "version": __version__, "api": "v1"})
