"""Users, roles, passwords and authentication."""
