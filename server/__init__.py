"""Créneau: an open, interoperable FHIR R4B scheduling server."""
