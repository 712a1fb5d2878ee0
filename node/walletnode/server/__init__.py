"""The node's adapters around the pure ledger: replicated state, group commit, HTTP API."""
