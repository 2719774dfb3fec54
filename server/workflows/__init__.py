"""Signature workflows: templates, workflows and their steps, link tokens, the outbound mail queue."""
