"""Consensus: the Raft engine (pysyncobj) behind a small interface, with our own durable storage.

Only `walletnode.consensus.raft` imports pysyncobj; the rest of the node talks to `Replicator`.
"""
