"""DKIM after setup (issue 15): `mailer keys add-dkim --type rsa|ed25519` (both at once),
`mailer dkim` prints every DNS record, and the STD-4 hint points there."""

from __future__ import annotations

import json
from pathlib import Path

import dkim

from mailer import preflight, sending
from mailer.crypto import Keyring
from mailer.dkim import add_key, dns_record, selectors
from tests.conftest import NO_GATES
from tests.helpers_workflow import approved
from tests.test_dkim import ed25519_verifier  # noqa: F401 - fixture
from tests.test_send_support import newsletter


def test_add_both_keys_and_print_both_records(mailer, config_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config_file.write_text(config_file.read_text() + '[dkim]\ndomain = "riverside-imaging.example"\nselector = "mailer"\n')
    assert mailer("init").exit_code == 0
    none = mailer("dkim")
    assert none.exit_code == 2 and "mailer keys add-dkim" in none.output
    res = mailer("keys", "add-dkim", "--type", "rsa", "--type", "ed25519")
    assert res.exit_code == 0, res.output
    assert "selector mailer)" in res.output and "selector mailer-ed25519)" in res.output
    keys = Keyring.load(tmp_path / "keys.json")
    assert [k for _s, k, _p in selectors(keys.dkim_private_pem, "mailer")] == ["rsa", "ed25519"]
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    recs = json.loads(mailer("dkim", "--format", "json").stdout)
    assert [(r["name"], r["key_type"]) for r in recs] == [
        ("mailer._domainkey.riverside-imaging.example", "rsa"),
        ("mailer-ed25519._domainkey.riverside-imaging.example", "ed25519")]
    assert recs[0]["value"].startswith("v=DKIM1; k=rsa; p=") and "k=ed25519" in recs[1]["value"]
    text = mailer("dkim").output
    assert "mailer._domainkey.riverside-imaging.example TXT" in text
    # rotating one type replaces it and keeps the other
    again = mailer("keys", "add-dkim", "--type", "ed25519")
    assert again.exit_code == 0 and "replaced" in again.output
    after = json.loads(mailer("dkim", "--format", "json").stdout)
    assert after[0]["value"] == recs[0]["value"] and after[1]["value"] != recs[1]["value"]


def test_std4_hint_points_to_add_dkim(sample_rt) -> None:  # type: ignore[no-untyped-def]
    c = approved(sample_rt)
    gate = next(g for g in preflight.check(sample_rt, c.id).gates if g.name == "dkim")
    assert "mailer keys add-dkim" in gate.fix and "mailer dkim" in gate.fix


async def test_both_keys_sign_every_message(sample_rt, sink, ed25519_verifier) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rt = sample_rt
    bundle, _ = add_key(None, "rsa")
    bundle, _ = add_key(bundle, "ed25519")
    rt.keyring.dkim_private_pem = bundle
    object.__setattr__(rt.settings, "dkim", rt.settings.dkim.model_copy(
        update={"enabled": True, "domain": "riverside-imaging.example", "selector": "mailer"}))
    records = {f"{sel}._domainkey.riverside-imaging.example": dns_record(pem).encode()
               for sel, _k, pem in selectors(bundle, "mailer")}

    def dns(name, timeout=5):  # type: ignore[no-untyped-def]
        name = name.decode() if isinstance(name, bytes) else name
        return records.get(name.rstrip("."))

    c = newsletter(rt)
    summary = await sending.send(rt, c.id, preflight=NO_GATES)
    assert summary.sent == len(sink.messages) > 0
    for m in sink.messages:
        assert m.data.count(b"DKIM-Signature: ") == 2
        d = dkim.DKIM(m.data)
        assert d.verify(idx=0, dnsfunc=dns) and d.verify(idx=1, dnsfunc=dns)
