"""The chaos soak (tests/nginx/soak.py) for a minute: nginx with both
modules, plugins that trap, loop, leak memory, call dead and mute
services and share data, under load while it is reloaded, its compile
cache damaged and workers killed. No request may fail, no worker may die
on a signal we did not send, the master lives, the log has no unexpected
alert, workers' memory stays bounded. `make soak` runs it longer."""

import os

from soak import run, summary

SECONDS = float(os.environ.get("PWASM_SOAK_TEST_SECONDS") or 60)


def test_soak_under_faults(tmp_path):
    report = run(tmp_path / "soak", SECONDS, reload_every=5.0, kill_every=12.0)
    print(summary(report))
    assert report["problems"] == [], summary(report)
    # the faults really happened
    assert report["reloads"] >= 3
    assert report["kills"] >= 1
    assert report["cache_entries_refused"] >= 1
    assert report["traps_logged"] > 0 and report["cpu_limit_hits"] > 0
    assert report["memory_limit_hits"] > 0
    byloc = report["by_location"]
    for where in ("ok", "slow", "trap-closed", "trap-open", "loop", "leak", "callout-dead",
                  "callout-mute", "callout-good", "callout-slow", "store", "stream"):
        assert byloc.get(where, {}).get("ok", 0) > 0, (where, byloc)
