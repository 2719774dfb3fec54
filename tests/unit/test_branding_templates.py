"""Operator overrides of the branded templates (server.branding.templates): a file of the same name in the
operator's folder (setting branding.templates) wins over the shipped one in config/templates, which wins over
the portal's built-in templates; HTML is autoescaped, so a company name can never become markup."""

from __future__ import annotations

from pathlib import Path

from server.branding.mail import BrandedMail
from server.branding.service import BrandInfo
from server.branding.templates import SHIPPED, environment

PORTAL_BUILT_IN = Path(__file__).resolve().parents[2] / "server" / "web" / "portal" / "templates"
BRAND = BrandInfo(7, "acme", "ACME <b>Bau</b> GmbH", "#b71c1c", "#2e7d32", "#ffffff", "https://sign.acme.example",
                  "https://acme.example/imprint", None, "ACME Signatur", "sign@acme.example", "support@acme.example",
                  None, "0", False)


class _NoLogos:
    """The only part of BrandService that composing a mail asks for."""

    @staticmethod
    def logo_png(brand: BrandInfo) -> bytes | None:
        return None


def _mail(operator: Path) -> tuple[str, str]:
    message = BrandedMail(_NoLogos(), environment(operator, "mail")).message(  # type: ignore[arg-type]
        BRAND, "kunde@example.com", "Bitte signieren", "Bitte hier signieren: https://sign.acme.example/portal/x")
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def test_the_shipped_mail_templates_are_the_default(tmp_path: Path) -> None:
    assert (SHIPPED / "mail" / "message.txt").is_file()
    text, html = _mail(tmp_path / "none")
    assert "Support: support@acme.example" in text and "Imprint: https://acme.example/imprint" in text
    assert "ACME &lt;b&gt;Bau&lt;/b&gt; GmbH" in html and "<b>Bau</b>" not in html  # autoescaped
    assert '<a href="https://sign.acme.example/portal/x">' in html


def test_an_operator_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "message.txt").write_text("Sehr geehrte Damen und Herren,\n{{ body }}\nIhre {{ brand.name }}\n")
    text, html = _mail(tmp_path)
    assert text.startswith("Sehr geehrte Damen und Herren,\nBitte hier signieren") and "Ihre acme" in text
    assert "Support:" not in text
    assert "support@acme.example" in html  # the HTML part not overridden: still the shipped one


def test_portal_pages_are_overridable_too(tmp_path: Path) -> None:
    (tmp_path / "portal").mkdir()
    (tmp_path / "portal" / "base.html").write_text("<p>{{ brand.company_name }}</p>{% block main %}{% endblock %}")
    env = environment(tmp_path, "portal", PORTAL_BUILT_IN)
    assert env.get_template("base.html").render(brand=BRAND) == "<p>ACME &lt;b&gt;Bau&lt;/b&gt; GmbH</p>"
    shipped = environment(tmp_path / "none", "portal", PORTAL_BUILT_IN)
    assert shipped.get_template("_brand_footer.html").filename == str(SHIPPED / "portal" / "_brand_footer.html")
    assert shipped.get_template("base.html").filename == str(PORTAL_BUILT_IN / "base.html")
