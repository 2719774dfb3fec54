"""The validation report as a PDF a person reads: the verdict, and for each signature who signed, when, at which
level, what it covers, its timestamps, certificate chain and messages, from the report's JSON form
(server.validation.report.to_json), under the brand's name, colour and logo (server.branding.pdf)."""

from __future__ import annotations

from typing import Any

from server.branding.service import BrandInfo, BrandService

VERDICTS = {"TOTAL-PASSED": "valid", "TOTAL-FAILED": "INVALID", "INDETERMINATE": "not proven (indeterminate)"}


def report_lines(report: dict[str, Any], brand: BrandInfo) -> list[str]:
    """The report's text lines, the brand's footer last."""
    signatures = report["signatures"]
    verdict = ("every signature is valid" if report["passed"] else
               "no signature found" if not signatures else "NOT every signature is valid")
    out = [brand.company_name, f"Validation report - {report['documentName'] or 'document'}", "",
           f"Result: {verdict} ({len(signatures)} signature{'s' if len(signatures) != 1 else ''})",
           f"Verified at {report['validationTime']}", ""]
    for index, sig in enumerate(signatures, 1):
        sub = f" / {sig['subIndication']}" if sig["subIndication"] else ""
        out += [f"Signature {index}: {VERDICTS.get(sig['indication'], sig['indication'])} "
                f"({sig['indication']}{sub})",
                f"   Signer: {sig['signer'] or 'unknown'}",
                f"   Signing time (claimed): {sig['signingTime'] or 'unknown'}"
                + (f"; proven to exist at {sig['bestSignatureTime']}" if sig["bestSignatureTime"] else ""),
                f"   Format and level: {sig['format']} {sig['level'] or '-'}",
                f"   Algorithms: digest {sig['digestAlgorithm'] or '-'}, signature {sig['signatureAlgorithm'] or '-'}",
                "   Covers:" + ("" if sig["scopes"] else " nothing that could be shown")]
        out += [f"      {s['name']} ({s['scope']}): {s['description']}" for s in sig["scopes"]]
        if sig["timestamps"]:
            out.append("   Timestamps:")
            out += [f"      {t['kind']} at {t['time'] or '-'}: {'valid' if t['valid'] else 'INVALID'}"
                    + (f", TSA {t['tsa']}" if t["tsa"] else "") for t in sig["timestamps"]]
        if sig["chain"]:
            out.append("   Certificate chain:")
            out += [f"      {n}. {subject}" for n, subject in enumerate(sig["chain"], 1)]
        if sig["messages"]:
            out.append("   Findings:")
            out += [f"      - {m}" for m in sig["messages"]]
        out.append("")
    out += ["This report states what the signatures prove at the time of verification.", "",
            f"{brand.company_name} - {brand.public_base_url}"]
    out += [f"{label}: {value}" for label, value in (("Support", brand.support_contact),
                                                     ("Imprint", brand.imprint_url),
                                                     ("Privacy", brand.privacy_url)) if value]
    return out


def report_pdf(brands: BrandService, brand: BrandInfo, report: dict[str, Any]) -> bytes:
    """The report (JSON form) as a PDF in ``brand``'s look."""
    from server.branding.pdf import text_pdf  # fonts, HarfBuzz, Pillow: ~16 MB, on first use

    return text_pdf(report_lines(report, brand), brands.logo_png(brand), brand.primary_color)
