// Validates RFC 4998 evidence records with BouncyCastle's org.bouncycastle.tsp.ers (Debian libbcpkix-java):
// arguments RECORD DATA [RECORD DATA ...]; prints one line per pair, VALID or INVALID and the reason.
// Compiled and run by tests/fixtures/bouncycastle.py.
import java.nio.file.*;
import java.util.Date;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;
import org.bouncycastle.tsp.ers.*;

public class ErsCheck {
    public static void main(String[] args) throws Exception {
        for (int i = 0; i + 1 < args.length; i += 2) {
            String verdict;
            try {
                ERSEvidenceRecord record = new ERSEvidenceRecord(Files.readAllBytes(Paths.get(args[i])),
                    new JcaDigestCalculatorProviderBuilder().build());
                record.validatePresent(new ERSByteData(Files.readAllBytes(Paths.get(args[i + 1]))), new Date());
                X509CertificateHolder tsa = record.getSigningCertificate();
                record.validate(new JcaSimpleSignerInfoVerifierBuilder().build(tsa));
                verdict = "VALID";
            } catch (Exception e) {
                verdict = "INVALID " + e;
            }
            System.out.println(verdict);
        }
    }
}
