"""``/api/v1/workflows``: templates, starting and following workflows, the inbox, acting on a step, links.

The route table (server.web.auth.ROUTES) decides the Action of each path; the service decides ownership
(starter, assignee) and the workflow's rules. ``/workflows/link`` is public: the link token is the
credential, and only for steps whose auth is ``link``. A step acted on with HTTP Basic counts as
``password``; with a valid second factor in the request (checked by the guard, or here from X-Siegel-OTP)
as ``password+2fa``. A sign step with a remote qualified key takes ``"remote": {"credential", "pin"}`` to start
its signature (200 when it is made at once, 202 with ``remoteSignature`` while it waits for the OTP the service
sent) and ``"remote": {"pin", "otp"}`` to finish it. A sign step whose template fixes no field or box takes
``"placement": {"page", "x", "y", "w", "h"}`` (PDF points from the lower left) for where its signature goes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable
from urllib.parse import quote

from twisted.internet import threads
from twisted.web import resource

from server.errors import Code, SiegelError
from server.identity.twofactor import TwoFactorService
from server.web.auth import client_address
from server.web.http import json_response, render_deferred
from server.web.twofactor import _body as json_body, require_factor
from server.workflows.service import Actor, Placement, RemoteKey, WorkflowService
from server.workflows.template import Auth
from server.workflows.templates import Keep


def _query(request: Any, name: str) -> str:
    return request.args.get(name.encode(), [b""])[-1].decode("utf-8", "replace")


def _number(text: bytes, what: str) -> int:
    try:
        value = int(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise SiegelError(Code.BAD_REQUEST, f"{what} {text.decode('latin-1')!r}: expected a number") from None
    if value < 1:
        raise SiegelError(Code.BAD_REQUEST, f"{what} {value}: expected a number from 1")
    return value


def _remote_key(body: dict[str, Any]) -> RemoteKey | None:
    """The ``remote`` member of a step action: the signer's credential, PIN and OTP for a remote qualified key."""
    raw = body.get("remote")
    if raw is None:
        return None
    if not (isinstance(raw, dict) and not set(raw) - {"credential", "pin", "otp"}
            and all(isinstance(v, str) for v in raw.values())):
        raise SiegelError(Code.BAD_REQUEST, 'remote: expected {"credential": ..., "pin": ...} to start a remote '
                                            'signature, {"pin": ..., "otp": ...} to finish the waiting one')
    return RemoteKey(raw.get("credential"), raw.get("pin"), raw.get("otp"))


def _placement(body: dict[str, Any]) -> Placement | None:
    """The ``placement`` member of a step action: page (1-based) and box x, y, w, h in PDF points."""
    raw = body.get("placement")
    if raw is None:
        return None
    if not (isinstance(raw, dict) and set(raw) == {"page", "x", "y", "w", "h"}
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw.values())
            and isinstance(raw["page"], int) and raw["page"] >= 1 and raw["w"] > 0 and raw["h"] > 0):
        raise SiegelError(Code.BAD_REQUEST, 'placement: expected {"page": 1.., "x", "y", "w" > 0, "h" > 0} in PDF '
                                            "points from the lower left")
    return Placement(raw["page"], (float(raw["x"]), float(raw["y"]), float(raw["w"]), float(raw["h"])))


def _acted(request: Any, status: dict[str, Any]) -> bytes:
    """200 with the workflow's status; 202 while the step's remote signature waits for its OTP."""
    return json_response(request, 202 if "remoteSignature" in status else 200, status)


def _pdf(request: Any, name: str, content: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/pdf")
    request.setHeader(b"content-disposition", f"attachment; filename*=UTF-8''{quote(name)}".encode("ascii"))
    request.setHeader(b"cache-control", b"no-store")
    return content


class _Endpoint(resource.Resource):
    """A leaf whose methods run ``handlers[method](request)`` off the reactor thread."""

    isLeaf = True

    def __init__(self, handlers: dict[bytes, Callable[[Any], bytes]]) -> None:
        super().__init__()
        self._handlers = handlers

    def render(self, request: Any) -> Any:
        handler = self._handlers.get(b"GET" if request.method == b"HEAD" else request.method)
        if handler is None:  # ROUTES answers unlisted paths and methods before this
            return render_deferred(request, lambda: _missing(request))
        return render_deferred(request, lambda: threads.deferToThread(handler, request))


def _missing(request: Any) -> Any:
    raise SiegelError(Code.NOT_FOUND, f"no resource at {request.path.decode('latin-1')}")


class WorkflowsRoot(resource.Resource):
    """The tree under ``/api/v1/workflows``; numbered children are workflows."""

    def __init__(self, service: WorkflowService, twofactor: TwoFactorService,
                 trusted_proxies: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self._service = service
        self._twofactor = twofactor
        self._trusted = trusted_proxies
        self.putChild(b"templates", _Templates(service))
        self.putChild(b"inbox", _Endpoint({b"GET": lambda r: json_response(r, 200, {
            "steps": service.inbox(r.principal)})}))
        link = _Endpoint({b"GET": self._link_view, b"POST": self._link_act})
        link.isLeaf = False
        link.putChild(b"document", _Endpoint({b"GET": lambda r: _pdf(r, *service.link_document(_query(r, "token")))}))
        self.putChild(b"link", link)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return _Workflow(self, _number(path, "workflow") if path.isdigit() else path)

    def render_POST(self, request: Any) -> Any:
        return _Endpoint({b"POST": self._start}).render(request)

    def _start(self, request: Any) -> bytes:
        body = json_body(request)
        try:
            document = base64.b64decode(str(body.get("document", "")), validate=True)
        except (binascii.Error, ValueError):
            raise SiegelError(Code.BAD_REQUEST, "document: expected the PDF in base64") from None
        status = self._service.start(request.principal, body.get("template"), document,
                                     body.get("documentName", "document.pdf"), body.get("variables", {}))
        request.setHeader(b"location", f"/api/v1/workflows/{status['id']}".encode())
        return json_response(request, 201, status)

    def actor(self, request: Any) -> Actor:
        """The authenticated account with the level this request proved."""
        level = Auth.PASSWORD
        if getattr(request, "second_factor", False) or request.getHeader(b"x-siegel-otp"):
            require_factor(self._twofactor, request, "this step")
            level = Auth.PASSWORD_2FA
        return Actor(level, client_address(request, self._trusted), principal=request.principal)

    def _link_view(self, request: Any) -> bytes:
        return json_response(request, 200, self._service.link_view(_query(request, "token"))[1])

    def _link_act(self, request: Any) -> bytes:
        body = json_body(request)
        token = body.get("token")
        return _acted(request, self._service.act_by_link(
            token if isinstance(token, str) else "", str(body.get("action", "")), body.get("reason"),
            client_address(request, self._trusted), _remote_key(body)))


class _Workflow(resource.Resource):
    """``/workflows/{id}``: status (GET); ``/cancel``, ``/document``, ``/history`` (JSON), ``/certificate`` (the
    signed certificate of completion), ``/steps/{n}``."""

    def __init__(self, root: WorkflowsRoot, workflow: int | bytes) -> None:
        super().__init__()
        self._root = root
        self._id = workflow

    def _workflow_id(self) -> int:
        if isinstance(self._id, bytes):
            return _number(self._id, "workflow")
        return self._id

    def render_GET(self, request: Any) -> Any:
        return _Endpoint({b"GET": lambda r: json_response(r, 200, self._root._service.status(
            r.principal, self._workflow_id()))}).render(request)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        service = self._root._service
        if path == b"cancel":
            return _Endpoint({b"POST": lambda r: json_response(r, 200, service.cancel(
                r.principal, self._workflow_id(), json_body(r).get("reason")))})
        if path == b"document":
            return _Endpoint({b"GET": lambda r: _pdf(r, *service.document(r.principal, self._workflow_id()))})
        if path == b"history":
            return _Endpoint({b"GET": lambda r: json_response(r, 200, service.history(r.principal, self._workflow_id()))})
        if path == b"certificate":
            return _Endpoint({b"GET": lambda r: _pdf(r, f"completion-{self._workflow_id()}.pdf",
                                                     service.certificate(r.principal, self._workflow_id()))})
        if path == b"steps" and request.postpath:
            step = request.postpath.pop(0)
            return _Endpoint({b"POST": lambda r: self._act(r, step)})
        return _Endpoint({})

    def _act(self, request: Any, step: bytes) -> bytes:
        body = json_body(request)
        return _acted(request, self._root._service.act(
            self._root.actor(request), self._workflow_id(), _number(step, "step"), str(body.get("action", "")),
            body.get("reason"), _remote_key(body), _placement(body)))


class _Templates(resource.Resource):
    """``/workflows/templates``: list (GET), create (POST ``{"name", "definition", "brand"}``); ``/{id}``: GET
    (``?version=``), PUT ``{"definition", "brand"}`` (either or both: a new version, the template's brand; a brand
    of null is the default brand), DELETE (retire)."""

    def __init__(self, service: WorkflowService) -> None:
        super().__init__()
        self._repo = service.templates

    def render(self, request: Any) -> Any:
        return _Endpoint({
            b"GET": lambda r: json_response(r, 200, {"templates": self._repo.list()}),
            b"POST": self._create}).render(request)

    def _create(self, request: Any) -> bytes:
        body = json_body(request)
        created = self._repo.create(request.principal, body.get("name"), body.get("definition"), body.get("brand"))
        request.setHeader(b"location", f"/api/v1/workflows/templates/{created['id']}".encode())
        return json_response(request, 201, created)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        def number() -> int:
            return _number(path, "template")

        def version(r: Any) -> int | None:
            text = _query(r, "version")
            return _number(text.encode(), "version") if text else None

        def retire(r: Any) -> bytes:
            self._repo.retire(r.principal, number())
            return json_response(r, 200, self._repo.describe(number()))

        def update(r: Any) -> bytes:
            body = json_body(r)
            return json_response(r, 200, self._repo.update(r.principal, number(), body.get("definition"),
                                                           body["brand"] if "brand" in body else Keep.BRAND))

        return _Endpoint({
            b"GET": lambda r: json_response(r, 200, self._repo.describe(number(), version(r))),
            b"PUT": update,
            b"DELETE": retire})
