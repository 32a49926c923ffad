# SPDX-License-Identifier: Apache-2.0
"""navectl backup: an online, consistent copy of controld's store, kept in
state_dir/backups (the newest 10) and copied to FILE; and the restore the
documentation gives (stop controld, put the copy in place, start it)."""
import sqlite3
import time

import navetest as nt


def tokens(srv):
    return sorted((t["id"], t["tunnel_id"]) for t in srv.navectl("tokens", "ls", json=True)["items"])


def test_backup_and_restore(server, make_client, svc, tmp_path):
    c = make_client()
    port = c.tcp_add(svc.port)
    for i in range(3):
        server.token(id=f"before-{i}")
    before = tokens(server)

    out = tmp_path / "nave-backup.db"
    rc, text, err = server.navectl("backup", str(out))
    assert rc == 0, err
    assert text.startswith(f"backup written to {out} (") and "controld keeps it as" in text, text
    kept = server.dir / "var" / "backups"
    copies = sorted(kept.glob("nave-*.db"))
    assert len(copies) == 1 and oct(copies[0].stat().st_mode & 0o777) == "0o640", copies
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    db = sqlite3.connect(out)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM tokens").fetchone()[0] == len(before)
    db.close()
    j = server.navectl("backup", json=True)
    assert set(j) == {"path", "bytes", "schema_version", "kept"} and j["bytes"] > 0, j

    # after the backup: another token and the tunnel keeps working
    after = server.token(id="after")
    assert (after["id"], after["tunnel_id"]) in tokens(server)
    nt.exchange(port, 1 * nt.MiB)

    # restore: stop controld, the copy in place of nave.db, start it again
    server.stop_controld()
    db_path = server.dir / "var" / "nave.db"
    for suffix in ("-wal", "-shm"):
        (server.dir / "var" / f"nave.db{suffix}").unlink(missing_ok=True)
    db_path.write_bytes(out.read_bytes())
    server.start_controld()
    server.wait_relay_connected()
    assert tokens(server) == before
    # relayd kept the tunnel; the restored store still holds its port
    nt.exchange(port, 1 * nt.MiB)


def test_backups_kept_are_the_newest_ten(server):
    paths = []
    for _ in range(12):
        paths.append(server.navectl("backup", json=True)["path"])
    kept = sorted(p.name for p in (server.dir / "var" / "backups").glob("nave-*.db"))
    assert len(set(paths)) == 12, "two backups got the same name"
    assert kept == sorted(p.rsplit("/", 1)[1] for p in paths)[-10:], kept
    assert not list((server.dir / "var" / "backups").glob("*.tmp"))


def test_backup_to_an_unwritable_place_says_so(server):
    rc, out, err = server.navectl("backup", "/proc/no/such/dir/x.db")
    assert rc == 1 and len(err.strip().splitlines()) == 1, (rc, out, err)
    assert "backup made as" in err and "/proc/no/such/dir/x.db" in err, err
