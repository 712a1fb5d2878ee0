"""Result codes of ledger commands: every command gets exactly one, never an exception."""

from enum import StrEnum


class Code(StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_SIGNATURE = "invalid_signature"
    NOT_A_MINTER = "not_a_minter"
    UNKNOWN_CURRENCY = "unknown_currency"
    CURRENCY_EXISTS = "currency_exists"
    SAME_ACCOUNT = "same_account"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    OVERFLOW = "overflow"


#: Codes after which the command is part of the ledger (a retry with the same id is a no-op).
APPLIED = frozenset({Code.OK, Code.EXISTS})
