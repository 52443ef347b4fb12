"""Drives mirrorfarm's GitLab remote-mirror API with python-gitlab itself, unchanged.

Run by tests/e2e/python_gitlab.test.mjs with MF_URL, MF_TOKEN and MF_PROJECT (a numeric id or
KEY/slug) set. Exits non-zero, with the reason, on the first expectation that fails.
"""

import os
import sys

import gitlab


def expect(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok - {what}")


def main():
    gl = gitlab.Gitlab(os.environ["MF_URL"], private_token=os.environ["MF_TOKEN"])
    gl.auth()
    expect(gl.user.username == "admin", "gl.auth() resolves the current user")

    project = gl.projects.get(os.environ["MF_PROJECT"])
    expect(project.path_with_namespace.lower() == os.environ["MF_PROJECT"].lower(), "projects.get by KEY/slug")

    expect(project.remote_mirrors.list(get_all=True) == [], "a new project has no remote mirrors")

    mirror = project.remote_mirrors.create(
        {"url": "https://ci-bot:py-secret-9@example.com/group/copy.git", "enabled": True}
    )
    expect(mirror.url == "https://*****:*****@example.com/group/copy.git", "create returns the scrubbed url")
    expect(mirror.enabled is True and mirror.update_status == "none", "create honours enabled; status none")
    expect(mirror.last_error is None and mirror.last_successful_update_at is None, "nulls are sent as nulls")

    for i in range(3):
        project.remote_mirrors.create({"url": f"https://example.com/extra-{i}.git"})
    mirrors = project.remote_mirrors.list(get_all=True, per_page=2)
    expect(len(mirrors) == 4, "list(get_all=True) follows the Link header across pages")
    page = project.remote_mirrors.list(page=2, per_page=3)
    expect(len(page) == 1, "explicit page/per_page")

    mirror.enabled = False
    mirror.only_protected_branches = True
    mirror.save()
    again = [m for m in project.remote_mirrors.list(get_all=True) if m.id == mirror.id][0]
    expect(again.enabled is False and again.only_protected_branches is True, "save() updates the mirror")

    try:
        mirror.sync()
        expect(False, "sync of a disabled mirror is refused")
    except gitlab.exceptions.GitlabCreateError as e:
        expect(e.response_code == 400, "sync of a disabled mirror is refused with 400")

    mirror.enabled = True
    mirror.save()
    mirror.sync()
    expect(True, "sync() of an enabled mirror is accepted (204)")

    try:
        project.remote_mirrors.create({"url": "http://169.254.169.254/latest"})
        expect(False, "a link-local url is refused")
    except gitlab.exceptions.GitlabCreateError as e:
        expect(e.response_code == 400 and "url" in str(e.error_message), "a link-local url is refused with 400")

    mirror.delete()
    remaining = {m.id for m in project.remote_mirrors.list(get_all=True)}
    expect(mirror.id not in remaining and len(remaining) == 3, "delete() removes the mirror")

    # Protected branches, names and wildcards, as python-gitlab manages them.
    project.protectedbranches.create({"name": "release/*", "push_access_level": 30})
    project.protectedbranches.create({"name": "main"})
    names = sorted(b.name for b in project.protectedbranches.list(get_all=True))
    expect(names == ["main", "release/*"], "protectedbranches.create() and list()")
    rule = project.protectedbranches.get("release/*")
    expect(rule.push_access_levels[0]["access_level"] == 30, "protectedbranches.get() of a wildcard")
    try:
        project.protectedbranches.create({"name": "main"})
        expect(False, "protecting a branch twice is refused")
    except gitlab.exceptions.GitlabCreateError as e:
        expect(e.response_code == 409, "protecting a branch twice is refused with 409")
    rule.delete()
    expect([b.name for b in project.protectedbranches.list()] == ["main"], "protectedbranches delete()")

    # A pull mirror set up the Projects-API way: attributes, then save().
    project.import_url = "https://pull-bot:pull-secret-7@example.com/group/upstream.git"
    project.mirror = True
    project.only_mirror_protected_branches = True
    project.mirror_overwrites_diverged_branches = True
    project.save()
    again = gl.projects.get(project.id)
    expect(again.mirror is True, "project.save() switches the pull mirror on")
    expect(again.import_url == "https://*****:*****@example.com/group/upstream.git", "import_url comes back masked")
    expect(again.only_mirror_protected_branches is True, "only_mirror_protected_branches is saved")
    pull = gl.http_get(f"/projects/{project.id}/mirror/pull")
    expect(pull["enabled"] is True and pull["url"].startswith("https://*****:*****@"), "the pull mirror API sees it")
    again.mirror = False
    again.save()
    expect(gl.projects.get(project.id).mirror is False, "project.save() switches it off again")

    try:
        gitlab.Gitlab(os.environ["MF_URL"], private_token="mfp_wrong_token_000000").auth()
        expect(False, "a wrong token is refused")
    except gitlab.exceptions.GitlabAuthenticationError:
        expect(True, "a wrong token is refused with 401")


if __name__ == "__main__":
    main()
