"""walletcluster ledger node: replicated, signed, multi-currency wallet ledger."""

__version__ = "0.1.0"
