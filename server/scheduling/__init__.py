"""The scheduling domain: the rules every write must meet, and the operations (find, hold, book,
cancel, selective cancellation, the dose ledger, slots from availability rules) built on them."""
