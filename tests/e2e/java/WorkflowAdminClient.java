// A JAX-WS client of Siegel's /soap/admin, compiled against the classes wsimport generates from the live WSDL
// (tests/e2e/test_workflows_soap.py). Arguments: WSDL URL, user, password, template name, PDF file, signer.
// It creates a one-step template, lists the templates, starts a workflow on the PDF, reads its status and
// provokes a validation fault; every answer is printed as Key=Value lines for the test to check.

import java.math.BigInteger;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Map;
import javax.xml.ws.BindingProvider;
import javax.xml.ws.soap.SOAPFaultException;
import siegel.admin._1.Definition;
import siegel.admin._1.ObjectFactory;
import siegel.admin._1.SiegelAdmin;
import siegel.admin._1.SignatureBox;
import siegel.admin._1.Template;
import siegel.admin._1.TemplateAssignee;
import siegel.admin._1.TemplateSignature;
import siegel.admin._1.TemplateStep;
import siegel.admin._1.TemplateStepArray;
import siegel.admin._1.TemplateSummary;
import siegel.admin._1.WorkflowAdmin;
import siegel.admin._1.WorkflowStatus;
import siegel.admin._1.WorkflowStep;

public class WorkflowAdminClient {
    private static final ObjectFactory F = new ObjectFactory();

    public static void main(String[] args) throws Exception {
        SiegelAdmin port = new WorkflowAdmin(new URL(args[0])).getSiegelAdmin();
        Map<String, Object> context = ((BindingProvider) port).getRequestContext();
        context.put(BindingProvider.USERNAME_PROPERTY, args[1]);
        context.put(BindingProvider.PASSWORD_PROPERTY, args[2]);
        String name = args[3];
        byte[] pdf = Files.readAllBytes(Paths.get(args[4]));

        Template created = port.createTemplate(name, definition(args[5]));
        System.out.println("Created=" + created.getId().getValue() + ":" + created.getName().getValue() + ":"
                           + created.getVersion().getValue());
        for (TemplateSummary t : port.listTemplates().getTemplateSummary()) {
            System.out.println("Listed=" + t.getId().getValue() + ":" + t.getName().getValue() + ":"
                               + t.getVersion().getValue());
        }
        WorkflowStatus started = port.startWorkflow(name, pdf, "java.pdf", null);
        BigInteger id = started.getId().getValue();
        WorkflowStatus status = port.getWorkflowStatus(id);
        System.out.println("Workflow=" + id + ":" + status.getState().getValue() + ":"
                           + status.getTemplate().getValue() + ":" + status.getStartedBy().getValue());
        for (WorkflowStep step : status.getSteps().getValue().getWorkflowStep()) {
            System.out.println("Step=" + step.getName().getValue() + ":" + step.getState().getValue() + ":"
                               + step.getAssignees().getValue().getAssignee().get(0).getUser().getValue());
        }
        try {
            port.createTemplate(name + "-leer", new Definition());
            System.out.println("Fault=none");
        } catch (SOAPFaultException fault) {
            System.out.println("Fault=" + fault.getFault().getFaultString());
        }
    }

    /** One PAdES B-B sign step of {@code signer} in a box on page 1. */
    private static Definition definition(String signer) {
        TemplateAssignee assignee = new TemplateAssignee();
        assignee.setUser(F.createTemplateAssigneeUser(signer));
        SignatureBox box = new SignatureBox();
        box.setX(F.createSignatureBoxX(50.0));
        box.setY(F.createSignatureBoxY(50.0));
        box.setWidth(F.createSignatureBoxWidth(200.0));
        box.setHeight(F.createSignatureBoxHeight(60.0));
        TemplateSignature signature = new TemplateSignature();
        signature.setLevel(F.createTemplateSignatureLevel("B-B"));
        signature.setPage(F.createTemplateSignaturePage(BigInteger.ONE));
        signature.setBox(F.createTemplateSignatureBox(box));
        TemplateStep step = new TemplateStep();
        step.setName(F.createTemplateStepName("Unterschrift"));
        step.setAssignee(F.createTemplateStepAssignee(assignee));
        step.setAction(F.createTemplateStepAction("sign"));
        step.setSignature(F.createTemplateStepSignature(signature));
        TemplateStepArray steps = new TemplateStepArray();
        steps.getTemplateStep().add(step);
        Definition definition = new Definition();
        definition.setDescription(F.createDefinitionDescription("from JAX-WS"));
        definition.setSteps(F.createDefinitionSteps(steps));
        return definition;
    }
}
