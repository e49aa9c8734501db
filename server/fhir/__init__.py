"""FHIR mechanics with no HTTP and no database: resource validation, search parameters (from the
official definitions), index values, search parsing, Bundles, OperationOutcome.

Imports nothing from the rest of the project.
"""
