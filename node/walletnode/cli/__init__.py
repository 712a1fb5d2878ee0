"""Command-line entry points: `walletnode` (a ledger node) and `walletctl` (the client)."""
