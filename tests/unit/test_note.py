"""Tests of ledger.note: C2SP signed notes and tlog checkpoints, against a published vector and tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import CheckpointError
from ledger.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    SignedCheckpoint,
    add_signature,
    key_hash,
    open_note,
    parse_verifier_key,
    public_key_bytes,
    sign_note,
    verifier_key,
)

# The example of golang.org/x/mod/sumdb/note (the reference implementation the C2SP spec was written from;
# the spec's own example gives no key). Ed25519 is deterministic, so signing must reproduce it byte for byte.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + b"\n"
    + "— PeterNeumann ".encode()
    + b"x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

ROOT = hashlib.sha256(b"some root").digest()


def go_private_key() -> Ed25519PrivateKey:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def new_key() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, public_key_bytes(key)


# --- known answers ------------------------------------------------------------------------------------------


def test_go_reference_vector() -> None:
    key = go_private_key()
    pub = public_key_bytes(key)
    assert verifier_key("PeterNeumann", pub) == GO_VKEY
    assert parse_verifier_key(GO_VKEY) == ("PeterNeumann", pub)
    assert key_hash("PeterNeumann", pub).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, name="PeterNeumann", private_key=key) == GO_NOTE
    assert open_note(GO_NOTE, verifiers=[("PeterNeumann", pub)]) == (GO_TEXT, ("PeterNeumann",))
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), verifiers=[("PeterNeumann", pub)])


def test_key_hash_by_hand() -> None:
    pub = bytes(range(32))
    want = hashlib.sha256(b"example.com/log\n\x01" + pub).digest()[:4]
    assert key_hash("example.com/log", pub) == want
    vkey = verifier_key("example.com/log", pub)
    assert vkey == f"example.com/log+{want.hex()}+" + base64.b64encode(b"\x01" + pub).decode()
    assert parse_verifier_key(vkey) == ("example.com/log", pub)


def test_signature_line_layout() -> None:
    key, pub = new_key()
    note = sign_note(b"hello\n", name="example.com/a", private_key=key)
    text, blank, sig_line = note.partition(b"\n\n")
    assert text + b"\n" == b"hello\n" and blank == b"\n\n"
    assert sig_line.startswith("\u2014 example.com/a ".encode()) and sig_line.endswith(b"\n")
    raw = base64.b64decode(sig_line.decode().split(" ")[2])
    assert len(raw) == 68 and raw[:4] == key_hash("example.com/a", pub)
    key.public_key().verify(raw[4:], b"hello\n")


# --- verifier keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase hex
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # 7 hex digits
        "PeterNeumanN+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # other name
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type byte 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad padding / length
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
        " PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_parse_verifier_key_refuses(bad: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(bad)


def test_bad_key_names_refused() -> None:
    _, pub = new_key()
    for name in ("", "a b", "a+b", "a\tb", "a\u00a0b"):
        with pytest.raises(CheckpointError):
            key_hash(name, pub)
    with pytest.raises(CheckpointError):
        key_hash("ok", pub[:31])


# --- opening notes ------------------------------------------------------------------------------------------


def test_round_trip_and_tampering_of_every_byte() -> None:
    key, pub = new_key()
    text = b"example.com/log\n3\nline three\n"
    note = sign_note(text, name="example.com/log", private_key=key)
    assert open_note(note, verifiers=[("example.com/log", pub)]) == (text, ("example.com/log",))
    for i in range(len(note)):
        for delta in (1, 0x40):
            mutated = bytearray(note)
            mutated[i] ^= delta
            with pytest.raises(CheckpointError):
                open_note(bytes(mutated), verifiers=[("example.com/log", pub)])


def test_unknown_signatures_are_ignored() -> None:
    key, pub = new_key()
    other, other_pub = new_key()
    note = sign_note(b"text\n", name="log", private_key=key)
    # a stranger's signature, the same name under another key, and a garbage-but-well-formed signature
    note = add_signature(note, name="witness.example/w1", private_key=other)
    note = add_signature(note, name="log", private_key=other)
    note += "— someone ".encode() + base64.b64encode(b"\x00" * 70) + b"\n"
    assert open_note(note, verifiers=[("log", pub)]) == (b"text\n", ("log",))
    both = open_note(note, verifiers=[("log", pub), ("witness.example/w1", other_pub)])
    assert both == (b"text\n", ("log", "witness.example/w1"))
    # signed only by keys we do not know: refused
    with pytest.raises(CheckpointError):
        open_note(note, verifiers=[("nobody", other_pub)])
    with pytest.raises(CheckpointError):
        open_note(note, verifiers=[])


def test_failing_signature_from_known_key_rejects_the_note() -> None:
    key, pub = new_key()
    note = sign_note(b"text\n", name="log", private_key=key)
    forged = base64.b64encode(key_hash("log", pub) + b"\x00" * 64)
    bad = note + "— log ".encode() + forged + b"\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(bad, verifiers=[("log", pub)])
    short = base64.b64encode(key_hash("log", pub) + b"\x00" * 10)
    with pytest.raises(CheckpointError):
        open_note(note + "— log ".encode() + short + b"\n", verifiers=[("log", pub)])


def test_text_may_contain_blank_lines() -> None:
    key, pub = new_key()
    text = b"a\n\nb\n\n\xe2\x80\x94 fake sig\n"
    note = sign_note(text, name="log", private_key=key)
    assert open_note(note, verifiers=[("log", pub)])[0] == text


def _sig(name: str, key: Ed25519PrivateKey, text: bytes) -> str:
    return base64.b64encode(key_hash(name, public_key_bytes(key)) + key.sign(text)).decode()


def _non_canonical(sig: str) -> str:
    """Same bytes, with the unused low bits of the last base64 digit set (68 bytes: one '=' of padding)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert sig.endswith("=") and not sig.endswith("==")
    last = alphabet[alphabet.index(sig[-2]) ^ 1]
    mangled = sig[:-2] + last + "="
    assert base64.b64decode(mangled) == base64.b64decode(sig) and mangled != sig
    return mangled


@pytest.mark.parametrize(
    "case",
    [
        "no-blank-line",
        "no-signatures",
        "bad-base64",
        "non-canonical-base64",
        "short-signature",
        "crlf",
        "cr-in-text",
        "signed-cr-in-text",
        "signed-tab-in-text",
        "missing-final-newline",
        "double-dash",
        "no-space-after-dash",
        "two-spaces",
        "name-with-plus",
        "blank-signature-line",
        "not-utf8",
        "too-big",
        "too-many-signatures",
    ],
)
def test_malformed_notes_refused(case: str) -> None:
    key, pub = new_key()
    text = b"text\n"
    sig = _sig("log", key, text)
    good = text + b"\n" + f"— log {sig}\n".encode()
    assert open_note(good, verifiers=[("log", pub)])[0] == text
    cr_text, tab_text = b"te\rt\n", b"te\tt\n"
    notes = {
        "no-blank-line": text + f"— log {sig}\n".encode(),
        "no-signatures": text + b"\n",
        "bad-base64": text + b"\n" + f"— log {sig[:-2]}!=\n".encode(),
        "non-canonical-base64": text + b"\n" + f"— log {_non_canonical(sig)}\n".encode(),
        "short-signature": text + b"\n" + "— log AAAA\n".encode(),
        "crlf": good.replace(b"\n", b"\r\n"),
        "cr-in-text": sign_note(b"text\n", name="log", private_key=key).replace(b"text\n", b"te\rt\n", 1),
        # validly signed, but the text carries CR / a tab: the note format forbids control characters
        "signed-cr-in-text": cr_text + b"\n" + f"— log {_sig('log', key, cr_text)}\n".encode(),
        "signed-tab-in-text": tab_text + b"\n" + f"— log {_sig('log', key, tab_text)}\n".encode(),
        "missing-final-newline": good[:-1],
        "double-dash": text + b"\n" + f"-- log {sig}\n".encode(),
        "no-space-after-dash": text + b"\n" + f"—log {sig}\n".encode(),
        "two-spaces": text + b"\n" + f"— log  {sig}\n".encode(),
        "name-with-plus": text + b"\n" + f"— lo+g {sig}\n".encode(),
        "blank-signature-line": good + b"\n",
        "not-utf8": b"\xff" + good,
        "too-big": b"x" * MAX_NOTE_BYTES + good,
        "too-many-signatures": good + f"— log {sig}\n".encode() * 100,
    }
    with pytest.raises(CheckpointError):
        open_note(notes[case], verifiers=[("log", pub)])


def test_sign_refuses_bad_text_and_names() -> None:
    key, _ = new_key()
    for text in (b"", b"no newline", b"cr\r\n", b"\xff\n", b"tab\there\n"):
        with pytest.raises(CheckpointError):
            sign_note(text, name="log", private_key=key)
    for name in ("", "a b", "a+b"):
        with pytest.raises(CheckpointError):
            sign_note(b"ok\n", name=name, private_key=key)
    with pytest.raises(CheckpointError):
        sign_note(b"x" * MAX_NOTE_BYTES + b"\n", name="log", private_key=key)


# --- checkpoints --------------------------------------------------------------------------------------------


def test_checkpoint_body_matches_spec_example() -> None:
    root = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    cp = Checkpoint(origin="example.com/behind-the-sofa", size=20852163, root=root)
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cp.body() == body
    assert Checkpoint.parse(body) == cp
    ext = Checkpoint(origin="o", size=0, root=ROOT, extensions=("ext one", "ext two"))
    assert ext.body().endswith(b"\next one\next two\n")
    assert Checkpoint.parse(ext.body()) == ext


@pytest.mark.parametrize(
    "body",
    [
        b"origin\n012\n" + base64.b64encode(ROOT) + b"\n",  # leading zero
        b"origin\n00\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n-1\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n+1\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n 1\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n1.0\n" + base64.b64encode(ROOT) + b"\n",
        "origin\n\u0661\n".encode() + base64.b64encode(ROOT) + b"\n",  # Arabic-Indic digit one
        b"origin\n18446744073709551616\n" + base64.b64encode(ROOT) + b"\n",  # 2**64
        b"origin\n1\n" + base64.b64encode(ROOT[:31]) + b"\n",  # 31-byte root
        b"origin\n1\n" + base64.b64encode(ROOT + b"\x00") + b"\n",  # 33-byte root
        b"origin\n1\n" + base64.b64encode(ROOT).rstrip(b"=") + b"\n",  # unpadded
        b"origin\n1\n" + base64.b64encode(ROOT),  # missing final newline
        b"origin\n1\n" + base64.b64encode(ROOT) + b"\r\n",
        b"origin\n1\n",  # no root line
        b"\n1\n" + base64.b64encode(ROOT) + b"\n",  # empty origin
        b"origin\n1\n" + base64.b64encode(ROOT) + b"\n\n",  # empty extension line
        b"origin\n1\n" + base64.b64encode(ROOT) + b"\next\n\nmore\n",
        b"",
    ],
)
def test_checkpoint_parse_refuses(body: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(body)


def test_checkpoint_constructor_validates() -> None:
    for kwargs in (
        {"origin": "", "size": 1, "root": ROOT},
        {"origin": "a\nb", "size": 1, "root": ROOT},
        {"origin": "o", "size": -1, "root": ROOT},
        {"origin": "o", "size": True, "root": ROOT},
        {"origin": "o", "size": 1, "root": ROOT[:16]},
        {"origin": "o", "size": 1, "root": ROOT, "extensions": ("",)},
    ):
        with pytest.raises(CheckpointError):
            Checkpoint(**kwargs)  # type: ignore[arg-type]


def test_signed_checkpoint_round_trip() -> None:
    key, pub = new_key()
    cp = Checkpoint(origin="example.com/ledger", size=42, root=ROOT)
    signed = SignedCheckpoint.sign(cp, name="example.com/ledger", private_key=key)
    got = SignedCheckpoint.verify(signed.note, verifiers=[parse_verifier_key(verifier_key("example.com/ledger", pub))])
    assert got.checkpoint == cp and got.note == signed.note and got.signers == ("example.com/ledger",)
    SignedCheckpoint.verify(signed.note, verifiers=[("example.com/ledger", pub)], origin="example.com/ledger")
    with pytest.raises(CheckpointError):
        SignedCheckpoint.verify(signed.note, verifiers=[("example.com/ledger", pub)], origin="example.com/other")
    tampered = signed.note.replace(b"\n42\n", b"\n43\n")
    with pytest.raises(CheckpointError):
        SignedCheckpoint.verify(tampered, verifiers=[("example.com/ledger", pub)])
    # a validly signed note whose text is not a checkpoint
    not_cp = sign_note(b"just text\n", name="example.com/ledger", private_key=key)
    with pytest.raises(CheckpointError):
        SignedCheckpoint.verify(not_cp, verifiers=[("example.com/ledger", pub)])
