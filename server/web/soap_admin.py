"""The project's own SOAP 1.1 admin service at ``/soap/admin`` (namespace :data:`ADMIN_NS`): signature
workflows for ERP and DMS systems — ``StartWorkflow``, ``GetWorkflowStatus``, ``CancelWorkflow``,
``DownloadDocument`` — and their templates — ``ListTemplates``, ``GetTemplate``, ``CreateTemplate``,
``UpdateTemplate`` (a new version), ``RetireTemplate`` — through the same service as REST
(``server.workflows.templates``). A template's definition is modelled element by element; it becomes the JSON form
of REST (:func:`_definition_json`) and is checked by the same ``parse_definition``, so an invalid one is the same
message, as a fault.

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
from spyne import (Application, Array, Boolean, ByteArray, ComplexModel, Double, Fault, Integer, ServiceBase,
                   Unicode, rpc)
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


class TemplateAssignee(ComplexModel):
    """Exactly one of User, Group (with Mode any or every) or External (an address or a {{variable}})."""

    __namespace__ = ADMIN_NS
    User = Unicode
    Group = Unicode
    Mode = Unicode
    External = Unicode
    ExternalName = Unicode


class SignatureBox(ComplexModel):
    """A signature's position on its page, in PDF points."""

    __namespace__ = ADMIN_NS
    X = Double
    Y = Double
    Width = Double
    Height = Double


class TemplateSignature(ComplexModel):
    __namespace__ = ADMIN_NS
    Format = Unicode
    Level = Unicode
    Field = Unicode
    Page = Integer
    Box = SignatureBox
    Appearance = Unicode
    KeySource = Unicode
    RemoteService = Unicode


class TemplateStep(ComplexModel):
    __namespace__ = ADMIN_NS
    Name = Unicode
    Assignee = TemplateAssignee
    Action = Unicode
    Auth = Unicode
    Signature = TemplateSignature
    DeadlineHours = Integer
    RemindAfterHours = Array(Double, member_name="Hours", type_name="HoursList")
    FourEyesWith = Unicode


class TemplateStarters(ComplexModel):
    __namespace__ = ADMIN_NS
    Roles = Array(Unicode, member_name="Role", type_name="RoleList")
    Users = Array(Unicode, member_name="User", type_name="UserList")
    Groups = Array(Unicode, member_name="Group", type_name="GroupList")


class TemplateDelivery(ComplexModel):
    """Exactly one of Folder, Callback, Email, EmailLink or Archive (true)."""

    __namespace__ = ADMIN_NS
    Folder = Unicode
    Callback = Unicode
    Email = Unicode
    EmailLink = Unicode
    Archive = Boolean


class TemplateDefinition(ComplexModel):
    __namespace__ = ADMIN_NS
    __type_name__ = "Definition"  # JAXB names Template/Definition's factory TemplateDefinition: no global one too
    Description = Unicode
    Starters = TemplateStarters
    Steps = Array(TemplateStep)
    Delivery = Array(TemplateDelivery)


class Template(ComplexModel):
    __namespace__ = ADMIN_NS
    Id = Integer
    Name = Unicode
    Version = Integer
    CurrentVersion = Integer
    Retired = Boolean
    Definition = TemplateDefinition


class TemplateSummary(ComplexModel):
    __namespace__ = ADMIN_NS
    Id = Integer
    Name = Unicode
    Version = Integer


def _given(**values: Any) -> dict[str, Any]:
    """The values a client gave (an element left out is None)."""
    return {key: value for key, value in values.items() if value is not None}


def _definition_json(d: TemplateDefinition | None) -> dict[str, Any] | None:
    """The REST (JSON) form of a SOAP definition, for ``parse_definition`` to check."""
    if d is None:
        return None

    def signature(s: TemplateSignature | None) -> dict[str, Any] | None:
        if s is None:
            return None
        box = None if s.Box is None else [s.Box.X, s.Box.Y, s.Box.Width, s.Box.Height]
        return _given(format=s.Format, level=s.Level, field=s.Field, page=s.Page, box=box, appearance=s.Appearance,
                      keySource=s.KeySource, remoteService=s.RemoteService)

    def step(t: TemplateStep) -> dict[str, Any]:
        a = t.Assignee
        assignee = None if a is None else _given(user=a.User, group=a.Group, mode=a.Mode, external=a.External,
                                                   name=a.ExternalName)
        return _given(name=t.Name, assignee=assignee, action=t.Action, auth=t.Auth, signature=signature(t.Signature),
                      deadlineHours=t.DeadlineHours, remindAfterHours=t.RemindAfterHours, fourEyesWith=t.FourEyesWith)

    starters = None if d.Starters is None else _given(roles=d.Starters.Roles, users=d.Starters.Users,
                                                       groups=d.Starters.Groups)
    delivery = None if d.Delivery is None else [
        _given(folder=x.Folder, callback=x.Callback, email=x.Email, emailLink=x.EmailLink, archive=x.Archive)
        for x in d.Delivery]
    return _given(description=d.Description, starters=starters, delivery=delivery,
                  steps=None if d.Steps is None else [step(t) for t in d.Steps])


def _definition_soap(d: dict[str, Any]) -> TemplateDefinition:
    """The SOAP form of a stored definition (``Definition.to_json``)."""

    def signature(s: dict[str, Any] | None) -> TemplateSignature | None:
        if s is None:
            return None
        box = s.get("box")
        return TemplateSignature(Format=s["format"], Level=s["level"], Field=s.get("field"), Page=s.get("page"),
                                 Box=None if box is None else SignatureBox(X=box[0], Y=box[1], Width=box[2],
                                                                           Height=box[3]),
                                 Appearance=s.get("appearance"), KeySource=s["keySource"],
                                 RemoteService=s.get("remoteService"))

    def step(t: dict[str, Any]) -> TemplateStep:
        a = t["assignee"]
        return TemplateStep(Name=t["name"], Action=t["action"], Auth=t["auth"], Signature=signature(t.get("signature")),
                            Assignee=TemplateAssignee(User=a.get("user"), Group=a.get("group"), Mode=a.get("mode"),
                                                      External=a.get("external"), ExternalName=a.get("name")),
                            DeadlineHours=t.get("deadlineHours"), RemindAfterHours=t.get("remindAfterHours"),
                            FourEyesWith=t.get("fourEyesWith"))

    starters = d["starters"]
    return TemplateDefinition(
        Description=d["description"], Steps=[step(t) for t in d["steps"]],
        Starters=TemplateStarters(Roles=starters["roles"], Users=starters["users"], Groups=starters["groups"]),
        Delivery=[TemplateDelivery(Folder=x.get("folder"), Callback=x.get("callback"), Email=x.get("email"),
                                   EmailLink=x.get("emailLink"), Archive=x.get("archive")) for x in d["delivery"]])


def _template(described: dict[str, Any]) -> Template:
    """The SOAP form of ``TemplateRepository.describe``."""
    return Template(Id=described["id"], Name=described["name"], Version=described["version"],
                    CurrentVersion=described["currentVersion"], Retired=described["retired"],
                    Definition=_definition_soap(described["definition"]))


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
    """Signature workflows: start, follow, cancel, fetch the document; their templates."""

    @rpc(_returns=Array(TemplateSummary), _out_variable_name="Templates")
    def ListTemplates(ctx: Any) -> list[TemplateSummary]:  # noqa: N802
        """The templates that are not retired, by name, each with its current version."""
        return [TemplateSummary(Id=t["id"], Name=t["name"], Version=t["version"])
                for t in _call(ctx, lambda service, principal: service.templates.list())]

    @rpc(Integer(min_occurs=1, nillable=False), Integer, _returns=Template,
         _in_variable_names={"template": "TemplateId", "version": "Version"}, _out_variable_name="Template")
    def GetTemplate(ctx: Any, template: int, version: int | None) -> Template:  # noqa: N802
        """One version of a template (its current one without Version)."""
        return _template(_call(ctx, lambda service, principal: service.templates.describe(template, version)))

    @rpc(Unicode(min_occurs=1, nillable=False), TemplateDefinition.customize(min_occurs=1, nillable=False),
         _returns=Template, _in_variable_names={"name": "Name", "definition": "Definition"},
         _out_variable_name="Template")
    def CreateTemplate(ctx: Any, name: str, definition: TemplateDefinition) -> Template:  # noqa: N802
        return _template(_call(ctx, lambda service, principal: service.templates.create(
            principal, name, _definition_json(definition))))

    @rpc(Integer(min_occurs=1, nillable=False), TemplateDefinition.customize(min_occurs=1, nillable=False),
         _returns=Template, _in_variable_names={"template": "TemplateId", "definition": "Definition"},
         _out_variable_name="Template")
    def UpdateTemplate(ctx: Any, template: int, definition: TemplateDefinition) -> Template:  # noqa: N802
        """A new version of the template; workflows already running keep theirs."""
        return _template(_call(ctx, lambda service, principal: service.templates.update(
            principal, template, _definition_json(definition))))

    @rpc(Integer(min_occurs=1, nillable=False), _returns=Template, _in_variable_names={"template": "TemplateId"},
         _out_variable_name="Template")
    def RetireTemplate(ctx: Any, template: int) -> Template:  # noqa: N802
        """The template starts no new workflows (running ones go on); it leaves the list."""
        def work(service: WorkflowService, principal: Principal) -> dict[str, Any]:
            service.templates.retire(principal, template)
            return service.templates.describe(template)

        return _template(_call(ctx, work))

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
