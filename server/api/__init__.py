"""HTTP: routes, content negotiation, headers (ETag, Location), errors → OperationOutcome.

May import every room below it (`scheduling`, `auth`, `audit`, `federation`, `fhir`, `store`);
nothing imports it but `server.app`.
"""
