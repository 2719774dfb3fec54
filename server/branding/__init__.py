"""Company branding: brands (``service.py``), logo checks (``logo.py``), the templates an operator may override
(``templates.py``: shipped in config/templates, the operator's in ``branding.templates``) and branded e-mail
(``mail.py``)."""
