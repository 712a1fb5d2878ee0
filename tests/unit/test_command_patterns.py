"""The API's check of a command's text fields against the patterns its schema publishes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from walletnode.ledger.commands import CreateCurrency, Mint, Transfer, pattern_error

HEX = "0123456789abcdef"
RULES = {"id": "[0-9a-f]{32}", "from_": "[0-9a-f]{64}", "to": "[0-9a-f]{64}", "minter": "[0-9a-f]{64}"}
RULES |= {"signature": "[0-9a-f]{128}", "currency": "[A-Z][A-Z0-9]{0,11}", "code": "[A-Z][A-Z0-9]{0,11}"}
KINDS = {
    Transfer: {"amount": 1},
    Mint: {"amount": 1},
    CreateCurrency: {"scale": 2},
}
# Characters that break a pattern (upper case, newline, space, NUL, non-ASCII) among valid ones.
text = st.text(alphabet=st.sampled_from(HEX + "ABCDEFGHJKXYZ019\n \x00é"), max_size=130)


@st.composite
def commands(draw: st.DrawFn) -> tuple[Transfer | Mint | CreateCurrency, str | None]:
    """A command whose text fields are all valid but (mostly) one, and the name of that one."""
    kind = draw(st.sampled_from(list(KINDS)))
    names = [name for name in kind.__struct_fields__ if name in RULES]
    values = {name: draw(st.from_regex(rf"\A{RULES[name]}\Z")) for name in names}
    broken: str | None = draw(st.sampled_from(names))
    valid = values[broken]
    extra = text.filter(bool)
    values[broken] = draw(st.one_of(extra.map(lambda t: valid + t), extra.map(lambda t: t + valid), text))
    if re.fullmatch(RULES[broken], values[broken]):
        broken = None  # the drawn text happened to keep the pattern
    return kind(**values, **KINDS[kind]), broken


@given(commands())
def test_a_command_passes_exactly_when_every_text_field_matches_its_pattern(case) -> None:
    command, broken = case
    error = pattern_error(command)
    if broken is None:
        assert error is None, error
    else:
        name = "from" if broken == "from_" else broken
        assert error is not None and error.endswith(f"- at `$.{name}`"), error


def test_a_valid_command_passes() -> None:
    command = Transfer(id="0" * 32, from_="a" * 64, to="b" * 64, currency="EUR2", amount=1, signature="f" * 128)
    assert pattern_error(command) is None
