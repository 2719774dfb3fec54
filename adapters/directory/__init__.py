"""LDAP / Active Directory: the reader behind ``server.identity.directory.DirectoryReader`` (ldap3)."""
