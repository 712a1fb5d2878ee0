"""The pure core: commands, signatures, and the deterministic ledger state machine."""
