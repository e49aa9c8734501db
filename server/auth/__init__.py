"""Who is calling and what they may do: OAuth2 clients and tokens (SMART Backend Services),
SMART scopes, owners and their grants.

Imports `server.fhir` and `server.store` only; never `server.api` or the scheduling domain.
"""
