"""Security layer (安全防护): identities, tokens, permissions, tenancy."""
