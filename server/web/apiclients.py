"""``/api/v1/api-clients``: the API clients of ERP and DMS systems (GET: key, name, account, brand, created,
revoked) and ``/{key}``: one (GET), its brand (PUT ``{"brand": NAME}``; null or ``default``: the default brand),
which its stamps, reports and the workflows it starts take (server.branding). An unknown brand or client is 404
naming it, and nothing changes. Creating and revoking clients stays with ``siegel apiclient``: the secret is shown
once, on the operator's terminal."""

from __future__ import annotations

from typing import Any

from twisted.web import resource

from server.branding.service import BrandService
from server.errors import Code, SiegelError
from server.identity.apiclients import ApiClientService
from server.identity.users import API_KEY
from server.web.http import json_response
from server.web.twofactor import _body as json_body
from server.web.workflows import _Endpoint


class ApiClientsRoot(resource.Resource):
    def __init__(self, clients: ApiClientService, brands: BrandService) -> None:
        super().__init__()
        self._clients = clients
        self._brands = brands

    def render(self, request: Any) -> Any:
        return _Endpoint({b"GET": lambda r: json_response(r, 200, {
            "clients": [c.public() for c in self._clients.list()]})}).render(request)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        key = path.decode("latin-1")

        def checked() -> str:
            if not API_KEY.match(key):
                raise SiegelError(Code.BAD_REQUEST, f"{key[:80]!r}: expected an API client's key (ak_ and 32 hex "
                                                    "digits)")
            return key

        def one(r: Any) -> bytes:
            found = self._clients.list(checked())
            if not found:
                raise SiegelError(Code.NOT_FOUND, f"no API client with the key {key!r}")
            return json_response(r, 200, found[0].public())

        def put(r: Any) -> bytes:
            body = json_body(r)
            if "brand" not in body:
                raise SiegelError(Code.BAD_REQUEST, "brand: give the client's brand (a brand's name, or null for "
                                                    "the default brand)")
            self._brands.assign(r.principal.name, "client", checked(), body["brand"])
            return one(r)

        return _Endpoint({b"GET": one, b"PUT": put})
