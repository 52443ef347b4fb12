"""atlassian-python-api (a real Bitbucket client) against the running Worker: the administration
calls it has for users, the announcement banner, the license and repository labels. Prints one
`ok - …` line per check."""
import os
import sys

from atlassian import Bitbucket

url, user, token, project, slug = (os.environ[k] for k in ("MF_URL", "MF_USER", "MF_TOKEN", "MF_PROJECT", "MF_SLUG"))
bitbucket = Bitbucket(url=url, username=user, password=token)


def check(ok, what):
    if not ok:
        print(f"not ok - {what}")
        sys.exit(1)
    print(f"ok - {what}")


users = bitbucket.get_users(user_filter="pyuser")
check([u["slug"] for u in users["values"]] == ["pyuser"], "get_users(user_filter=) finds the user")
everyone = list(bitbucket.get_users_info(limit=2))
check(len(everyone) >= 3 and all("directoryName" in u for u in everyone), "get_users_info() pages through the admin view")

bitbucket.set_announcement_banner({"message": "Python says hi", "enabled": True, "audience": "ALL"})
banner = bitbucket.get_announcement_banner()
check(banner["message"] == "Python says hi" and banner["audience"] == "ALL", "set_/get_announcement_banner round-trip")
bitbucket.delete_announcement_banner()
check(not bitbucket.get_announcement_banner(), "delete_announcement_banner() removes it (GET answers 204)")

license = bitbucket.get_current_license()
check(license["licensee"] == "Python Co" and license["status"]["currentNumberOfUsers"] >= 3, "get_current_license() reads the license and the user count")

bitbucket.set_repo_label(project, slug, "python-label")
labels = bitbucket.get_repo_labels(project, slug)
check([l["name"] for l in labels["values"]] == ["python-label"], "set_repo_label() then get_repo_labels()")
