"""Open statistics: what each counted write is counted as (its stat tags, stamped by the
scheduling rules on every write), the department of a place, and the published figures
(store-side aggregation, small cells withheld).

Imports `server.fhir` and `server.store` only; never `server.api` or the scheduling domain,
which calls `stamping.stamp` on every write as it calls the access labelling.
"""
