"""The password hasher of the CAS test server: Django's pbkdf2_sha256 at the rounds the test side
hashes with (``run.json``'s ``password_rounds``).

With Django's default (a million rounds) every login would cost half a second of CPU, and a hash
with fewer rounds than the default makes Django pad each *failed* check up to the default (its
timing defence), so the rounds the hashes carry must be the rounds the hasher expects.
"""

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class CampusPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    @property
    def iterations(self):
        return int(settings.RUN["password_rounds"])
