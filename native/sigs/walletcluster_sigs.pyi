from collections.abc import Sequence

def verify_groups(groups: Sequence[Sequence[tuple[bytes, bytes, bytes]]]) -> list[list[bool]]:
    """For each group, one flag per (public key, signature, signed bytes): True when the signature is
    valid (cofactored ZIP-215 rules, small-order keys refused). All groups are batched together; a failing
    group is then checked alone, and its items one by one."""
