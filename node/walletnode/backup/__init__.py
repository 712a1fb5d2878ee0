"""Backups of the ledger to object storage, and restores from them (see docs/operations.md, "Backups")."""
