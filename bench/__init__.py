"""The comparison benchmark: our ledger against etcd on the same transfer workload (`python -m bench.run`)."""
