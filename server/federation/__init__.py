"""Federation: how Créneau and other vendors' systems exchange availability through open
standards. Publication (SMART Scheduling Links `$bulk-publish`): what is published, in which
files, streamed from the store.

Imports `server.auth`, `server.scheduling`, `server.fhir` and `server.store`; never `server.api`.
"""
