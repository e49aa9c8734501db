"""Persistence behind one interface: versions and history, search-index values beside each
resource, translation of the store-neutral search form. Two implementations: `sqlite.py`
(embedded default) and `mongo.py` (scale-out). May import `server.fhir`; nothing above it.
"""
