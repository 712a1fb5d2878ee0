"""`walletctl keys list` shows whole public keys at any terminal width; `keys show` prints one alone."""

from __future__ import annotations

import json
import os
import pathlib

from walletnode.keystore import Keystore

from ..walletctl import walletctl

LONG_NAME = "treasury-minter-of-the-eu-region"


def keystore(tmp_path: pathlib.Path) -> tuple[dict[str, str], dict[str, str]]:
    """A keystore with a short name, a long one and an encrypted key; (walletctl's env, name -> key)."""
    home = str(tmp_path / "keys")
    store = Keystore(home)
    keys = {name: store.create(name, "").public for name in ("alice", LONG_NAME)}
    keys["vault"] = store.create("vault", "secret").public
    return {**os.environ, "WALLET_HOME": home, "WALLET_PASSWORD": ""}, keys


def test_keys_list_never_cuts_a_public_key(tmp_path: pathlib.Path) -> None:
    env, keys = keystore(tmp_path)
    listed = walletctl({**env, "COLUMNS": "80"}, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), listed.stdout
    for name, public in keys.items():
        # On an 80-column console every key is whole, on one line, a word of its own (to copy).
        assert any(public in line.split() for line in lines), f"{name}'s key is cut:\n{listed.stdout}"
    caption = " ".join(listed.stdout.split("stored unencrypted (empty password):")[1].split())
    assert caption == f"alice, {LONG_NAME}", "the unencrypted keys are named, the encrypted vault is not"

    # Narrower than a key: it folds over lines, in its own column, and nothing is lost.
    narrow = walletctl({**env, "COLUMNS": "40"}, "keys", "list").stdout
    column = narrow.splitlines()[0].index("public key")
    folded = "".join(line[column:].strip() for line in narrow.split("stored unencrypted")[0].splitlines()[1:])
    assert folded == "".join(keys[name] for name in sorted(keys)), narrow


def test_keys_show_prints_the_public_key_alone(tmp_path: pathlib.Path) -> None:
    env, keys = keystore(tmp_path)
    for ref, name in (("alice", "alice"), ("treas", LONG_NAME), (keys["vault"][:12], "vault")):
        shown = walletctl({**env, "COLUMNS": "20"}, "keys", "show", ref)
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, keys[name] + "\n", "")
    as_json = json.loads(walletctl(env, "-o", "json", "keys", "show", "vault").stdout)
    assert as_json == {"name": "vault", "public": keys["vault"], "encrypted": True}
    missing = walletctl(env, "keys", "show", "bob")
    assert missing.returncode == 2 and "no key matches 'bob'" in missing.stderr
