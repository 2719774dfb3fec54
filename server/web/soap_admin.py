"""The project's own SOAP 1.1 admin service at ``/soap/admin`` (namespace :data:`ADMIN_NS`): signature
workflows for ERP and DMS systems — ``StartWorkflow``, ``GetWorkflowStatus``, ``CancelWorkflow``,
``DownloadDocument``.

Unlike ``/dss`` and ``/archive/s4`` (contract-first, our own WSDL files), this contract is code-first: spyne
models the operations and generates the WSDL (document/literal wrapped, the schema inline), which ``GET
/soap/admin?wsdl`` serves with the service address of the request's host (:func:`server.web.dss.base_url`).
Spyne's Twisted transport does not run on our Twisted, so :class:`AdminEndpoint` calls spyne's
``WsgiApplication`` itself in the reactor's thread pool (through :class:`server.web.dss.SoapResource`, like
every SOAP endpoint), with the authenticated principal in the WSGI environment (:data:`PRINCIPAL_KEY`).

Authentication (HTTP Basic, WS-Security UsernameToken, client certificate) and the permission of each
operation (``server.web.auth.DSS_ACTIONS``) are the guard's; ownership is the workflow service's. Every
failure is a SOAP fault with the DSS Result in its detail: a :class:`SiegelError` of the service as it is,
spyne's own faults (schema-invalid request, unknown operation) rewritten to that form.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs

from lxml import etree
from spyne import Application, Array, Boolean, ByteArray, ComplexModel, Fault, Integer, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from twisted.web.resource import IResource
from twisted.web.server import Request

from server.config import Settings
from server.errors import Code, SiegelError
from server.identity.users import Principal
from server.web.soap import SOAP11_ENV, SOAP_CONTENT_TYPE, dss_result, soap_fault
from server.web.soap_prefix import ADMIN_NS
from server.workflows.service import WorkflowService
from server.xmlsafe import parse_xml

log = logging.getLogger("siegel.soap.admin")

PATH = "/soap/admin"
PRINCIPAL_KEY = "siegel.principal"
_PLACEHOLDER = "http://siegel.invalid"  # the base URL the WSDL is generated with, replaced per request
_DSS_RESULT = "{urn:oasis:names:tc:dss:1.0:core:schema}Result"
_T = TypeVar("_T")


class Variable(ComplexModel):
    """A template variable given at start (e.g. an external signer's e-mail address)."""

    __namespace__ = ADMIN_NS
    Name = Unicode(min_occurs=1, nillable=False)
    Value = Unicode(min_occurs=1, nillable=False)


class Assignee(ComplexModel):
    __namespace__ = ADMIN_NS
    User = Unicode
    Email = Unicode
    External = Boolean
    State = Unicode
    Action = Unicode
    ActedAt = Unicode
    Auth = Unicode
    Flag = Unicode  # set when the directory disabled or removed the account of a pending assignment


class WorkflowStep(ComplexModel):
    __namespace__ = ADMIN_NS
    Position = Integer
    Name = Unicode
    Action = Unicode
    State = Unicode
    Deadline = Unicode
    Assignees = Array(Assignee)


class WorkflowStatus(ComplexModel):
    __namespace__ = ADMIN_NS
    Id = Integer
    State = Unicode
    Reason = Unicode
    Template = Unicode
    TemplateVersion = Integer
    DocumentName = Unicode
    Revision = Integer
    DocumentSha256 = Unicode
    StartedBy = Unicode
    Created = Unicode
    Finished = Unicode
    ArchiveObjectId = Unicode
    Steps = Array(WorkflowStep)


class WorkflowDocument(ComplexModel):
    __namespace__ = ADMIN_NS
    Name = Unicode
    Revision = Integer
    Sha256 = Unicode
    Content = ByteArray


def _status(status: dict[str, Any]) -> WorkflowStatus:
    """The SOAP form of WorkflowService's status."""
    return WorkflowStatus(
        Id=status["id"], State=status["state"], Reason=status["reason"], Template=status["template"]["name"],
        TemplateVersion=status["template"]["version"], DocumentName=status["documentName"],
        Revision=status["revision"], DocumentSha256=status["documentSha256"], StartedBy=status["startedBy"],
        Created=status["created"], Finished=status["finished"], ArchiveObjectId=status.get("archiveObjectId"),
        Steps=[WorkflowStep(Position=s["position"], Name=s["name"], Action=s["action"], State=s["state"],
                            Deadline=s["deadline"], Assignees=[
                                Assignee(User=a["user"], Email=a["email"], External=a["external"], State=a["state"],
                                         Action=a["action"], ActedAt=a["actedAt"], Auth=a["auth"], Flag=a.get("flag"))
                                for a in s["assignees"]]) for s in status["steps"]])


def _fault(error: SiegelError) -> Fault:
    side = "Server" if error.kind.major.endswith(":ResponderError") else "Client"
    return Fault(side, error.message, detail=dss_result(error.kind.major, error.result_minor, error.message))


def _call(ctx: Any, work: Callable[[WorkflowService, Principal], _T]) -> _T:
    """``work`` with the service and the request's principal; a SiegelError becomes a fault with its Result."""
    env = ctx.transport.req_env
    try:
        return work(env["siegel.workflows"], env[PRINCIPAL_KEY])
    except SiegelError as exc:
        raise _fault(exc) from None
    except Exception:
        log.exception("SOAP admin operation %s failed", ctx.method_name)
        raise _fault(SiegelError(Code.INTERNAL, "internal error")) from None


class WorkflowAdmin(ServiceBase):
    """Signature workflows: start, follow, cancel, fetch the document."""

    @rpc(Unicode(min_occurs=1, nillable=False), ByteArray(min_occurs=1, nillable=False), Unicode,
         Array(Variable), _returns=WorkflowStatus,
         _in_variable_names={"template": "Template", "document": "Document", "document_name": "DocumentName",
                             "variables": "Variables"}, _out_variable_name="Status")
    def StartWorkflow(ctx: Any, template: str, document: list[bytes], document_name: str | None,  # noqa: N802
                      variables: list[Variable] | None) -> WorkflowStatus:
        """A workflow of the template (its name or id) on the PDF ``document`` (spyne gives its chunks)."""
        given: dict[str, str] = {}
        for variable in variables or []:
            if variable.Name in given:
                raise _fault(SiegelError(Code.BAD_REQUEST, f"Variables: {variable.Name!r} is given twice"))
            given[variable.Name] = variable.Value
        ref: int | str = int(template) if template.isdigit() else template
        return _status(_call(ctx, lambda service, principal: service.start(
            principal, ref, b"".join(document), document_name or "document.pdf", given)))

    @rpc(Integer(min_occurs=1, nillable=False), _returns=WorkflowStatus,
         _in_variable_names={"workflow": "WorkflowId"}, _out_variable_name="Status")
    def GetWorkflowStatus(ctx: Any, workflow: int) -> WorkflowStatus:  # noqa: N802
        return _status(_call(ctx, lambda service, principal: service.status(principal, workflow)))

    @rpc(Integer(min_occurs=1, nillable=False), Unicode, _returns=WorkflowStatus,
         _in_variable_names={"workflow": "WorkflowId", "reason": "Reason"}, _out_variable_name="Status")
    def CancelWorkflow(ctx: Any, workflow: int, reason: str | None) -> WorkflowStatus:  # noqa: N802
        return _status(_call(ctx, lambda service, principal: service.cancel(principal, workflow, reason)))

    @rpc(Integer(min_occurs=1, nillable=False), _returns=WorkflowDocument,
         _in_variable_names={"workflow": "WorkflowId"}, _out_variable_name="Document")
    def DownloadDocument(ctx: Any, workflow: int) -> WorkflowDocument:  # noqa: N802
        """The document's current revision: the signed PDF once the workflow is completed."""
        def work(service: WorkflowService, principal: Principal) -> WorkflowDocument:
            name, content = service.document(principal, workflow)
            status = service.status_of(workflow)
            return WorkflowDocument(Name=name, Revision=status["revision"], Sha256=status["documentSha256"],
                                    Content=content)

        return _call(ctx, work)


def _application() -> Application:
    return Application([WorkflowAdmin], tns=ADMIN_NS, name="SiegelAdmin",
                       in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())


def _with_result(fault_envelope: bytes) -> bytes:
    """Spyne's own fault (a schema-invalid request, an unknown operation) with our DSS Result in its detail;
    a fault of ours (:func:`_fault`) as it is."""
    envelope = etree.fromstring(fault_envelope)  # spyne's output, not the client's
    fault = envelope.find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    if fault is None or fault.find(f"detail/{_DSS_RESULT}") is not None:
        return fault_envelope
    local = (fault.findtext("faultcode") or "").rpartition(":")[2]
    message = fault.findtext("faultstring") or "the request was refused"
    if local.startswith("Client.SchemaValidationError"):
        return soap_fault(SiegelError(Code.SCHEMA_INVALID, f"the request does not match the {PATH} schema: {message}"))
    if local.startswith("Client"):
        return soap_fault(SiegelError(Code.BAD_REQUEST, message))
    log.error("spyne fault at %s: %s %s", PATH, local, message)
    return soap_fault(SiegelError(Code.INTERNAL, "internal error"))


class AdminEndpoint:
    """``/soap/admin`` without the transport: spyne's WSGI application called with a prepared environment."""

    def __init__(self, workflows: WorkflowService, max_xml_depth: int) -> None:
        self._workflows = workflows
        self._max_depth = max_xml_depth
        self._wsgi = WsgiApplication(_application())
        self._wsdl = self._generated_wsdl()

    def _generated_wsdl(self) -> bytes:
        status, body = self._run("GET", "wsdl", b"", None)
        if status != 200:
            raise RuntimeError(f"spyne could not generate the {PATH} WSDL: {body[:500]!r}")
        return body

    def _run(self, method: str, query: str, body: bytes, principal: Principal | None) -> tuple[int, bytes]:
        environ = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": PATH, "QUERY_STRING": query,
            "SERVER_NAME": "siegel.invalid", "SERVER_PORT": "80", "HTTP_HOST": "siegel.invalid",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": SOAP_CONTENT_TYPE, PRINCIPAL_KEY: principal, "siegel.workflows": self._workflows}
        started: list[str] = []
        chunks = self._wsgi(environ, lambda status, headers, exc_info=None: started.append(status))
        return int(started[0].split()[0]), b"".join(chunks)

    def wsdl(self, base_url: str) -> bytes:
        """The generated WSDL with its service address under ``base_url``."""
        return self._wsdl.replace(_PLACEHOLDER.encode(), base_url.encode())

    def handle(self, body: bytes, principal: Principal) -> tuple[int, bytes]:
        """HTTP status and SOAP envelope answering the request ``body`` of the authenticated ``principal``."""
        try:
            parse_xml(body, max_depth=self._max_depth)  # hostile or broken XML never reaches spyne's parser
        except SiegelError as exc:
            return 500, soap_fault(exc)
        status, answer = self._run("POST", "", body, principal)
        return (200, answer) if status == 200 else (500, _with_result(answer))


class WsdlContract:
    """What ``GET /soap/admin`` serves (the part of :class:`server.web.dss.Contract` a SOAP resource uses)."""

    def __init__(self, endpoint: AdminEndpoint) -> None:
        self._endpoint = endpoint

    def render_get(self, request: Request, public_base_url: str) -> bytes:
        from server.web.dss import base_url

        query = request.uri.partition(b"?")[2].decode("latin-1")
        if "wsdl" not in {key.lower() for key in parse_qs(query, keep_blank_values=True)}:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return f"not found: GET {PATH}?wsdl for the WSDL\n".encode()
        request.setHeader(b"content-type", SOAP_CONTENT_TYPE.encode())
        return self._endpoint.wsdl(base_url(request, public_base_url))



def build_admin_resource(settings: Settings, workflows: WorkflowService) -> IResource:
    """The ``/soap/admin`` resource; spyne builds the application and its WSDL here, once."""
    from server.web.dss import SoapResource

    endpoint = AdminEndpoint(workflows, settings.server.max_xml_depth)
    return SoapResource(settings, WsdlContract(endpoint), endpoint)  # type: ignore[arg-type]
