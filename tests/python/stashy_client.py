"""stashy (a real Bitbucket Server client) against the running Worker: reads a fork's sync status
and switches sync off and on with its own calls. Prints one `ok - …` line per check."""
import os
import sys

import stashy

url, user, token, project, slug = (os.environ[k] for k in ("MF_URL", "MF_USER", "MF_TOKEN", "MF_PROJECT", "MF_SLUG"))
stash = stashy.connect(url, user, token)
repo = stash.projects[project].repos[slug]


def check(ok, what):
    if not ok:
        print(f"not ok - {what}")
        sys.exit(1)
    print(f"ok - {what}")


status = repo.get_sync()
check(status["available"] is True and status["enabled"] is True, "get_sync() reads an enabled, available fork")
check(isinstance(status["lastSync"], int), "lastSync is epoch milliseconds")
check(isinstance(status["aheadRefs"], list), "the ref lists are arrays")

repo.update_sync(False)
check(repo.get_sync()["enabled"] is False, "update_sync(False) switches sync off")

repo.update_sync(True)
again = repo.get_sync()
check(again["enabled"] is True and again["lastSync"] >= status["lastSync"], "update_sync(True) syncs and switches it on")
