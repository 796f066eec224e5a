#!/usr/bin/env bash
# A site built on django-notifications moves to this app, the way a user would do it:
#
#   1. venv A: django-notifications-community 1.12.3 (the fork that loads on Django 5.2) in a
#      fresh `django-admin startproject legacy`; migrate; notify.send() some history (some
#      read, one soft-deleted, one to an inactive user, one to a group).
#   2. venv B: our wheel, built from this checkout, in a fresh virtualenv (theirs and ours are
#      both the Python package `notifications`: they cannot share one). The settings change as
#      the README's "Coming from django-notifications" says; `migrate` must succeed with their
#      table and migration records still in the database; `import_django_notifications` runs
#      twice (the second imports nothing); the inbox API shows each user's rows, read state kept;
#      and once their table is dropped, as the README's last step says, users delete again.
#
# Usage: scripts/ci/legacy_site_check.sh   (PYTHON=python3.11 to choose the interpreter;
# KEEP_LEGACY_SITE=1 keeps the temporary directory for a look after a failure.)
# pip's cache is used on purpose: after the first run nothing is downloaded again.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/legacy-site.XXXXXX")"
STARTED=$SECONDS
# The sites here are their own: a caller's settings module (pytest's tests.settings, say)
# must not leak into their manage.py, which only sets it by default.
unset DJANGO_SETTINGS_MODULE PYTHONPATH

say() { echo "legacy_site_check: [$((SECONDS - STARTED)) s] $*"; }
cleanup() {
    if [[ -n "${KEEP_LEGACY_SITE:-}" ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'say "FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
fail() {
    say "FAILED: $*" >&2
    exit 1
}

PIP_QUIET=(--quiet --disable-pip-version-check)
# The few modules this uses compile on import; the rest need not be compiled at install.
PIP_INSTALL=(install "${PIP_QUIET[@]}" --no-compile)

# ---- 1. the legacy site, on django-notifications ---------------------------------------------
say "venv A: django-notifications-community 1.12.3 on Django 5.2"
"$PYTHON" -m venv "$WORK/venv-a"
"$WORK/venv-a/bin/python" -m pip "${PIP_INSTALL[@]}" \
    "django>=5.2,<5.3" "django-notifications-community==1.12.3"

mkdir "$WORK/site"
cd "$WORK/site"
"$WORK/venv-a/bin/django-admin" startproject legacy .

# Their README's set-up: the app, soft delete (so rows can be marked deleted), their urls.
"$WORK/venv-a/bin/python" - <<'EOF'
import pathlib

settings = pathlib.Path("legacy/settings.py")
text = settings.read_text()
anchor = "'django.contrib.staticfiles',"
assert anchor in text, "startproject's INSTALLED_APPS changed"
text = text.replace(anchor, anchor + "\n    'notifications',", 1)
text += "\nDJANGO_NOTIFICATIONS_CONFIG = {'SOFT_DELETE': True}\n"
settings.write_text(text)

urls = pathlib.Path("legacy/urls.py")
text = urls.read_text().replace("from django.urls import path", "from django.urls import include, path")
anchor = "path('admin/', admin.site.urls),"
assert anchor in text, "startproject's urls.py changed"
text = text.replace(
    anchor,
    anchor + "\n    path('inbox/notifications/', include('notifications.urls', namespace='notifications')),",
)
urls.write_text(text)
EOF

"$WORK/venv-a/bin/python" manage.py migrate --verbosity 0
"$WORK/venv-a/bin/python" manage.py shell --no-imports -c '
from django.contrib.auth.models import Group, User
from notifications.models import Notification
from notifications.signals import notify

alice = User.objects.create_user("alice", password="pw-alice")
bob = User.objects.create_user("bob", password="pw-bob")
carol = User.objects.create_user("carol", password="pw-carol", is_active=False)
editors = Group.objects.create(name="editors")
editors.user_set.add(alice, bob)

notify.send(bob, recipient=alice, verb="mentioned you in", action_object=alice, target=editors,
            level="warning")
notify.send(bob, recipient=alice, verb="commented on", target=editors, description="Nice work",
            level="success")
notify.send(alice, recipient=editors, verb="joined")  # one row per member: alice and bob
notify.send(bob, recipient=alice, verb="said something regrettable")
notify.send(bob, recipient=carol, verb="pinged")

Notification.objects.filter(verb="mentioned you in").mark_all_as_read()
Notification.objects.get(recipient=bob, verb="joined").mark_as_read()
Notification.objects.filter(verb="said something regrettable").mark_all_as_deleted()
assert Notification.objects.count() == 6, Notification.objects.count()
print("legacy_site_check: legacy site has", Notification.objects.count(), "notifications")
'

# ---- 2. the switch: our wheel in a fresh virtualenv ------------------------------------------
say "venv B: our wheel, built from $REPO"
"$PYTHON" -m venv "$WORK/venv-b"
"$WORK/venv-b/bin/python" -m pip wheel "${PIP_QUIET[@]}" --no-deps "$REPO" -w "$WORK/wheels"
shopt -s nullglob
wheels=("$WORK"/wheels/*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || fail "expected one wheel, got: ${wheels[*]:-none}"
"$WORK/venv-b/bin/python" -m pip "${PIP_INSTALL[@]}" "${wheels[0]}"
"$WORK/venv-b/bin/python" -c 'import importlib.util as u; assert u.find_spec("notifications.importer")' \
    || fail "the installed notifications package is not ours"

# The README's steps: their "notifications" leaves INSTALLED_APPS and their urls go; then the
# "Add it to your site" block (ours is also named "notifications": listing it twice would be
# a duplicate label).
"$WORK/venv-b/bin/python" - <<'EOF'
import pathlib

settings = pathlib.Path("legacy/settings.py")
text = settings.read_text()
assert "\n    'notifications',\n" in text
text = text.replace("\n    'notifications',\n", "\n", 1)
text += '''
import os

from notifications.setup import channel_layers, sqlite_database

INSTALLED_APPS = ["daphne", *INSTALLED_APPS, "channels", "notifications"]
ASGI_APPLICATION = "legacy.asgi.application"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = channel_layers(REDIS_URL)
NOTIFICATIONS = {"REDIS_URL": REDIS_URL}
DATABASES = {"default": sqlite_database(BASE_DIR / "db.sqlite3")}
'''
settings.write_text(text)

urls = pathlib.Path("legacy/urls.py")
text = urls.read_text()
theirs = "    path('inbox/notifications/', include('notifications.urls', namespace='notifications')),\n"
assert theirs in text
text = text.replace(theirs, '    path("notifications/", include("notifications.urls")),\n')
urls.write_text(text)
EOF

say "migrate, with their table and migration records in place"
"$WORK/venv-b/bin/python" manage.py migrate --verbosity 1 > "$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&2; fail "migrate failed on the legacy database"; }
"$WORK/venv-b/bin/python" manage.py shell --no-imports -c '
from django.db import connection
with connection.cursor() as cursor:
    tables = connection.introspection.table_names(cursor)
    cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = %s", ["notifications"])
    theirs = cursor.fetchone()[0]
    cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = %s", ["realtime_notifications"])
    ours = cursor.fetchone()[0]
assert "notifications_notification" in tables, "their table is gone"
assert "realtime_notifications_notification" in tables, "our table is missing"
assert theirs >= 13, f"their migration records: {theirs}"
assert ours >= 4, f"our migration records: {ours}"
print(f"legacy_site_check: migrated: {ours} migrations of ours beside their {theirs}")
'

say "import (twice)"
"$WORK/venv-b/bin/python" manage.py import_django_notifications --dry-run | tee "$WORK/dry.log"
grep -q "would import 4 of 6 (skipped 1 deleted, 0 without recipient, 1 inactive recipient" \
    "$WORK/dry.log" || fail "the dry run did not count 4 of 6"
"$WORK/venv-b/bin/python" manage.py import_django_notifications | tee "$WORK/first.log"
grep -q "Done: imported 4 of 6 (skipped 1 deleted, 0 without recipient, 1 inactive recipient" \
    "$WORK/first.log" || fail "the first import did not import 4 of 6"
"$WORK/venv-b/bin/python" manage.py import_django_notifications | tee "$WORK/second.log"
grep -q "Done: imported 0 of 6 .*4 already imported" "$WORK/second.log" \
    || fail "the second import was not a no-op"

say "the inbox API"
"$WORK/venv-b/bin/python" manage.py shell --no-imports -c '
import json

from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment

from notifications.models import Notification

setup_test_environment()  # the test client host, "testserver", becomes an allowed host


def inbox(username):
    client = Client()
    client.force_login(User.objects.get(username=username))
    response = client.get("/notifications/api/")
    assert response.status_code == 200, (username, response.status_code, response.content[:300])
    return response.json()


alice, bob = inbox("alice"), inbox("bob")
got = {
    "alice": [(n["title"], n["read"], n["level"]) for n in alice["results"]],
    "bob": [(n["title"], n["read"], n["level"]) for n in bob["results"]],
}
expected = {
    "alice": [  # newest first, as they were sent
        ("alice joined", False, "info"),
        ("bob commented on editors", False, "success"),
        ("bob mentioned you in alice on editors", True, "warning"),
    ],
    "bob": [("alice joined", True, "info")],
}
assert got == expected, json.dumps(got, indent=2)
assert (alice["unread"], bob["unread"]) == (2, 0), (alice["unread"], bob["unread"])
assert not Notification.objects.filter(dispatched_at__isnull=True).exists(), "left undispatched"
print("legacy_site_check: inbox API:", json.dumps(got))
'

# The README's last step, and why it is one: their table keeps its foreign key to the users,
# and with their app gone nothing deletes its rows first, so deleting such a user fails.
say "retire their table"
"$WORK/venv-b/bin/python" manage.py shell --no-imports -c '
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction

try:
    with transaction.atomic():
        User.objects.get(username="bob").delete()
except IntegrityError:
    pass
else:
    raise AssertionError("bob was deleted while their table still points at him")
with connection.cursor() as cursor:
    cursor.execute("DROP TABLE notifications_notification")
    cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["notifications"])
User.objects.get(username="bob").delete()
print("legacy_site_check: their table dropped; users delete again")
'
"$WORK/venv-b/bin/python" manage.py migrate --check --verbosity 0 \
    || fail "migrate --check found work after their table was dropped"

say "OK in $((SECONDS - STARTED)) s"
