"""Consensus: our own Raft. A pure core (core.py, with messages, progress, raft_log, storage) and
the adapter that drives it on the node's event loop (replicator.py) with its log on disk
(log_store.py) and its peers over sealed connections (transport.py, wire.py, peer_cipher.py).
"""
