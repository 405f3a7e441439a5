"""django-cas-server authentication class for the test campus: people come from ``users.json``.

The test process rewrites that file (atomically) to add, change or remove people, and every login
reads it afresh, so a change is in force for the next login without restarting the server.
Passwords are Django ``pbkdf2_sha256`` hashes, checked by Django's own hasher (campus_hashers.py).
"""

import json

from cas_server.auth import AuthUser
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password

# Checked when the username is unknown, so a wrong username costs the same time as a wrong password.
_DUMMY_HASH = make_password("not-a-real-password")


def _people():
    with open(settings.CAMPUS_USERS_FILE, encoding="utf-8") as f:
        return json.load(f)


class CampusUser(AuthUser):
    def __init__(self, username):
        super().__init__(username)
        self._record = _people().get(username)

    def test_password(self, password):
        if self._record is None or self._record.get("disabled"):
            check_password(password, _DUMMY_HASH)
            return False
        return check_password(password, self._record["password"])

    def attributs(self):
        if self._record is None:
            return {}
        return dict(self._record["attributes"])
